// Package errdefs defines the error classes shared by every berth component.
//
// Components wrap one of these sentinels with context
// (fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)); each edge (the
// HTTP API, the CLI) translates the class exactly once, to a status code or an
// exit code, and the client maps it back. Never match error strings.
package errdefs

import (
	"errors"
	"net/http"
)

// The error classes. Wrap them with %w; test with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrConflict        = errors.New("conflict")
	ErrUnavailable     = errors.New("unavailable")
	ErrNotImplemented  = errors.New("not implemented")
	ErrForbidden       = errors.New("forbidden")
	ErrUnauthorized    = errors.New("unauthorized")
	// ErrCommandNotFound and ErrCommandNotExecutable are the container
	// command's own failures (Docker's exit codes 127 and 126).
	ErrCommandNotFound      = errors.New("executable file not found")
	ErrCommandNotExecutable = errors.New("permission denied")
)

// Is reports whether err is of class target. It is errors.Is, named here so
// callers need only one import.
func Is(err, target error) bool { return errors.Is(err, target) }

// HTTPStatus maps an error to the status code the Docker Engine API uses for it.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrAlreadyExists), errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrCommandNotFound), errors.Is(err, ErrCommandNotExecutable):
		// Docker answers a start whose command cannot run with 400/500;
		// berth keeps the class in the body's "kind" so its CLI can exit 126/127.
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

// Kind names the class of err, for carrying it across the API in error bodies.
func Kind(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// FromKind returns the class named by kind (as Kind returns it), or nil.
func FromKind(kind string) error {
	for _, k := range kinds {
		if k.name == kind {
			return k.err
		}
	}
	return nil
}

var kinds = []struct {
	name string
	err  error
}{
	{"not-found", ErrNotFound},
	{"already-exists", ErrAlreadyExists},
	{"invalid-argument", ErrInvalidArgument},
	{"conflict", ErrConflict},
	{"unavailable", ErrUnavailable},
	{"not-implemented", ErrNotImplemented},
	{"forbidden", ErrForbidden},
	{"unauthorized", ErrUnauthorized},
	{"command-not-found", ErrCommandNotFound},
	{"command-not-executable", ErrCommandNotExecutable},
}
