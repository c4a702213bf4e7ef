package apiserver

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/berth/berth/internal/errdefs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// apiError is an error that carries the Kubernetes Status to answer with.
type apiError struct {
	status metav1.Status
	class  error
}

func (e *apiError) Error() string { return e.status.Message }
func (e *apiError) Unwrap() error { return e.class }

func newStatus(code int32, reason metav1.StatusReason, class error, msg string) *apiError {
	return &apiError{status: metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: code,
	}, class: class}
}

func (e *apiError) withDetails(r *resource, name string) *apiError {
	d := &metav1.StatusDetails{Name: name}
	if r != nil {
		d.Group, d.Kind = r.group, r.name
	}
	e.status.Details = d
	return e
}

func errNotFound(r *resource, name string) *apiError {
	return newStatus(404, metav1.StatusReasonNotFound, errdefs.ErrNotFound, fmt.Sprintf("%s %q not found", r.groupResource(), name)).withDetails(r, name)
}

func errAlreadyExists(r *resource, name string) *apiError {
	return newStatus(409, metav1.StatusReasonAlreadyExists, errdefs.ErrAlreadyExists, fmt.Sprintf("%s %q already exists", r.groupResource(), name)).withDetails(r, name)
}

func errConflict(r *resource, name, why string) *apiError {
	return newStatus(409, metav1.StatusReasonConflict, errdefs.ErrConflict, fmt.Sprintf("Operation cannot be fulfilled on %s %q: %s", r.groupResource(), name, why)).withDetails(r, name)
}

func errBadRequest(format string, a ...any) *apiError {
	return newStatus(400, metav1.StatusReasonBadRequest, errdefs.ErrInvalidArgument, fmt.Sprintf(format, a...))
}

func errMethodNotAllowed(format string, a ...any) *apiError {
	return newStatus(405, metav1.StatusReasonMethodNotAllowed, errdefs.ErrNotImplemented, fmt.Sprintf(format, a...))
}

func errForbidden(format string, a ...any) *apiError {
	return newStatus(403, metav1.StatusReasonForbidden, errdefs.ErrForbidden, fmt.Sprintf(format, a...))
}

func errGone(format string, a ...any) *apiError {
	return newStatus(410, metav1.StatusReasonExpired, errdefs.ErrNotFound, fmt.Sprintf(format, a...))
}

func errTooLarge(format string, a ...any) *apiError {
	return newStatus(413, metav1.StatusReasonRequestEntityTooLarge, errdefs.ErrInvalidArgument, fmt.Sprintf(format, a...))
}

func errUnsupportedMedia(ct string) *apiError {
	return newStatus(415, metav1.StatusReasonUnsupportedMediaType, errdefs.ErrInvalidArgument, fmt.Sprintf("the body of the request was in an unknown format %q: want application/json, application/yaml or application/vnd.kubernetes.protobuf", ct))
}

// fieldErr is one validation failure with its JSON field path.
type fieldErr struct {
	Type  metav1.CauseType
	Field string
	Msg   string
}

func required(path, msg string) fieldErr {
	if msg == "" {
		msg = "Required value"
	} else {
		msg = "Required value: " + msg
	}
	return fieldErr{metav1.CauseTypeFieldValueRequired, path, msg}
}

func invalid(path string, value any, msg string) fieldErr {
	return fieldErr{metav1.CauseTypeFieldValueInvalid, path, fmt.Sprintf("Invalid value: %#v: %s", value, msg)}
}

func duplicate(path string, value any) fieldErr {
	return fieldErr{metav1.CauseTypeFieldValueDuplicate, path, fmt.Sprintf("Duplicate value: %#v", value)}
}

func errInvalid(r *resource, name string, errs []fieldErr) *apiError {
	msg := fmt.Sprintf("%s %q is invalid: ", r.kind, name)
	d := &metav1.StatusDetails{Name: name, Group: r.group, Kind: r.kind}
	for i, e := range errs {
		if i > 0 {
			msg += ", "
		}
		msg += e.Field + ": " + e.Msg
		d.Causes = append(d.Causes, metav1.StatusCause{Type: e.Type, Message: e.Msg, Field: e.Field})
	}
	if len(errs) > 1 {
		msg = fmt.Sprintf("%s %q is invalid: [", r.kind, name) + msg[len(fmt.Sprintf("%s %q is invalid: ", r.kind, name)):] + "]"
	}
	e := newStatus(422, metav1.StatusReasonInvalid, errdefs.ErrInvalidArgument, msg)
	e.status.Details = d
	return e
}

// toStatus converts any error to the Status to send.
func toStatus(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return newStatus(404, metav1.StatusReasonNotFound, errdefs.ErrNotFound, err.Error())
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return newStatus(409, metav1.StatusReasonAlreadyExists, errdefs.ErrAlreadyExists, err.Error())
	case errors.Is(err, errdefs.ErrConflict):
		return newStatus(409, metav1.StatusReasonConflict, errdefs.ErrConflict, err.Error())
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return newStatus(400, metav1.StatusReasonBadRequest, errdefs.ErrInvalidArgument, err.Error())
	case errors.Is(err, errdefs.ErrForbidden):
		return newStatus(403, metav1.StatusReasonForbidden, errdefs.ErrForbidden, err.Error())
	case errors.Is(err, errdefs.ErrUnauthorized):
		return newStatus(401, metav1.StatusReasonUnauthorized, errdefs.ErrUnauthorized, err.Error())
	case errors.Is(err, errdefs.ErrUnavailable):
		return newStatus(503, metav1.StatusReasonServiceUnavailable, errdefs.ErrUnavailable, err.Error())
	case errors.Is(err, errdefs.ErrNotImplemented):
		return newStatus(405, metav1.StatusReasonMethodNotAllowed, errdefs.ErrNotImplemented, err.Error())
	}
	return newStatus(500, metav1.StatusReasonInternalError, nil, "internal error: "+err.Error())
}

func writeError(w http.ResponseWriter, err error) {
	st := toStatus(err)
	writeJSON(w, int(st.status.Code), &st.status)
}
