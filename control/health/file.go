package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ErrFile is a FILE_CHECK whose file says the server is failed.
var ErrFile = errors.New("tracked file reports a fault")

// fileReadMax is how much of the file is read (keepalived reads 127 bytes).
const fileReadMax = 127

// File is keepalived's FILE_CHECK with its track_file (check_file.c and track_file.c's
// process_track_file and update_track_file_status, acassen/keepalived). The file holds
// a number, read as C's strtol with base 0 does (leading blanks, a sign, 0x for hex, a
// leading 0 for octal, anything after the digits ignored); a missing, empty or
// unreadable file counts as 0. A number out of the int32 range is ignored, keeping the
// previous value, as keepalived does.
//
//   - Weight 0: a non-zero number is a failure (with Reverse: a zero one).
//   - Weight W: the server stays up, and number×W (negated with Reverse) is added to its
//     configured weight (ConfiguredWeight): the result, clamped to 0..65535, is its
//     weight, as keepalived adds it to the effective weight.
//
// Init writes InitValue to the file before it is first read when the file does not
// exist (or always, with Overwrite): track_file's init_file.
type File struct {
	Path             string
	Weight           int32
	Reverse          bool
	ConfiguredWeight int32
	Init             bool
	InitValue        int64
	Overwrite        bool

	st *fileState
}

// fileState is what a File remembers between checks.
type fileState struct {
	mu     sync.Mutex
	inited bool
	last   int64
}

// NewFile checks c.
func NewFile(c File) (*File, error) {
	if c.Path == "" {
		return nil, fmt.Errorf("%w: FILE_CHECK needs a file", ErrSpec)
	}
	if c.ConfiguredWeight < 0 || c.ConfiguredWeight > 65535 {
		return nil, fmt.Errorf("%w: FILE_CHECK configured weight %d: expected 0 to 65535", ErrSpec, c.ConfiguredWeight)
	}
	c.st = &fileState{}
	return &c, nil
}

// strtol reads s as C's strtol(s, NULL, 0); ok is false when the value does not fit in
// an int64 (ERANGE).
func strtol(s string) (v int64, ok bool) {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isDigit(s[2], 16):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base = 8
	}
	n := 0
	for n < len(s) && isDigit(s[n], base) {
		n++
	}
	if n == 0 {
		return 0, true
	}
	u, err := strconv.ParseUint(s[:n], base, 64)
	if err != nil || u > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

func isDigit(c byte, base int) bool {
	switch {
	case c >= '0' && c <= '9':
		return int(c-'0') < base
	case c >= 'a' && c <= 'f':
		return base == 16
	case c >= 'A' && c <= 'F':
		return base == 16
	}
	return false
}

// read returns the file's number.
func (c *File) read() int64 {
	f, err := os.Open(c.Path)
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, fileReadMax)
	n, _ := io.ReadFull(f, buf)
	if n == 0 {
		return 0
	}
	v, ok := strtol(string(buf[:n]))
	if !ok || v < math.MinInt32 || v > math.MaxInt32+1 {
		return c.st.last // keepalived: "Invalid number ... ignoring"
	}
	return v
}

// Check implements Checker.
func (c *File) Check(ctx context.Context) Result {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if c.Init && !c.st.inited {
		c.st.inited = true
		if _, err := os.Stat(c.Path); c.Overwrite || errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(c.Path, []byte(strconv.FormatInt(c.InitValue, 10)+"\n"), 0o644); err != nil {
				return Result{Err: fmt.Errorf("track file %s: init_file: %w", c.Path, err)}
			}
		}
	}
	v := c.read()
	c.st.last = v
	if c.Weight == 0 {
		if (v != 0) != c.Reverse {
			return Result{Err: fmt.Errorf("%s holds %d: %w", c.Path, v, ErrFile)}
		}
		return Result{}
	}
	delta := v * int64(c.Weight)
	if c.Reverse {
		delta = -delta
	}
	w := min(max(int64(c.ConfiguredWeight)+delta, 0), 65535)
	return Result{Dynamic: true, Weight: int32(w)}
}

func (c *File) String() string {
	s := fmt.Sprintf("FILE_CHECK %s weight %d reverse %v of %d", c.Path, c.Weight, c.Reverse, c.ConfiguredWeight)
	if c.Init {
		s += fmt.Sprintf(" init %d overwrite %v", c.InitValue, c.Overwrite)
	}
	return s
}
