package cgroups

// wrapErr is fmt.Errorf("%s: %w") without fmt, which would pull reflect into
// the shim binary.
func wrapErr(msg string, err error) error { return &wrapped{msg, err} }

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
