package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// An errorCode is one of the error codes of the OCI distribution spec
// ("Error Codes"), with the HTTP status the registry answers it with.
type errorCode struct {
	code   string
	status int
}

var (
	errBlobUnknown         = errorCode{"BLOB_UNKNOWN", http.StatusNotFound}
	errBlobUploadInvalid   = errorCode{"BLOB_UPLOAD_INVALID", http.StatusBadRequest}
	errBlobUploadUnknown   = errorCode{"BLOB_UPLOAD_UNKNOWN", http.StatusNotFound}
	errDigestInvalid       = errorCode{"DIGEST_INVALID", http.StatusBadRequest}
	errManifestBlobUnknown = errorCode{"MANIFEST_BLOB_UNKNOWN", http.StatusBadRequest}
	errManifestInvalid     = errorCode{"MANIFEST_INVALID", http.StatusBadRequest}
	errManifestUnknown     = errorCode{"MANIFEST_UNKNOWN", http.StatusNotFound}
	errNameInvalid         = errorCode{"NAME_INVALID", http.StatusBadRequest}
	errNameUnknown         = errorCode{"NAME_UNKNOWN", http.StatusNotFound}
	errSizeInvalid         = errorCode{"SIZE_INVALID", http.StatusBadRequest}
	errUnauthorized        = errorCode{"UNAUTHORIZED", http.StatusUnauthorized}
	errUnsupported         = errorCode{"UNSUPPORTED", http.StatusMethodNotAllowed}
	errTagInvalid          = errorCode{"TAG_INVALID", http.StatusBadRequest}
	errRangeInvalid        = errorCode{"BLOB_UPLOAD_INVALID", http.StatusRequestedRangeNotSatisfiable}
	errTooLarge            = errorCode{"MANIFEST_INVALID", http.StatusRequestEntityTooLarge}
	errPaginationInvalid   = errorCode{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest}
	errNotFound            = errorCode{"NOT_FOUND", http.StatusNotFound}
	errInternal            = errorCode{"UNKNOWN", http.StatusInternalServerError}
)

// regError is a spec error: a code, a message for people, and an optional
// detail object for programs.
type regError struct {
	code    errorCode
	message string
	detail  any
}

func (e *regError) Error() string { return e.code.code + ": " + e.message }

func newErr(code errorCode, format string, args ...any) *regError {
	return &regError{code: code, message: fmt.Sprintf(format, args...)}
}

func (e *regError) withDetail(d any) *regError { e.detail = d; return e }

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers err: a *regError with its code and status, anything
// else as a 500 UNKNOWN whose message is the error text.
func writeError(w http.ResponseWriter, err error) {
	e, ok := err.(*regError)
	if !ok {
		e = newErr(errInternal, "%v", err)
	}
	b, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.code.code, Message: e.message, Detail: e.detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(e.code.status)
	w.Write(b)
}
