package keepalived

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; every *Error from Parse and Load wraps ErrSyntax or ErrInclude, so
// callers can tell a bad file from a missing one with errors.Is.
var (
	// ErrSyntax: the configuration is malformed or uses a value keepalived would refuse.
	ErrSyntax = errors.New("keepalived configuration error")
	// ErrInclude: an included file could not be found or read, or includes loop.
	ErrInclude = errors.New("keepalived include error")
)

// maxErrors bounds how many errors one parse reports.
const maxErrors = 20

// Error is one problem at a position. Its text is "file:line: message".
type Error struct {
	Pos   Pos
	Msg   string
	kind  error
	cause error // the file system's error for ErrInclude, if any
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

// Unwrap returns ErrSyntax or ErrInclude, and the file system's error (fs.ErrNotExist,
// ...) when reading a file failed.
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// ErrorList is every error of one parse, in file order; it is what Parse and Load return.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As access to each error.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
