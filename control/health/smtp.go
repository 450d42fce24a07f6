package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ErrSMTP is an SMTP dialogue that did not go as SMTP_CHECK wants.
var ErrSMTP = errors.New("SMTP check failed")

// smtpMaxLine bounds one reply line (keepalived's SMTP_BUFF_MAX is 512 bytes).
const smtpMaxLine = 512

// SMTP is keepalived's SMTP_CHECK (check_smtp.c, acassen/keepalived): connect, read the
// greeting, which must start with 220; send "HELO name"; the reply must start with 250;
// send "QUIT" and read one more line. Each step must finish within Timeout
// (connect_timeout). Only the first line of each reply is looked at, as keepalived does.
type SMTP struct {
	Addr     netip.AddrPort
	Timeout  time.Duration
	HeloName string
	Dialer   Dialer
}

// NewSMTP checks c.
func NewSMTP(c SMTP) (*SMTP, error) {
	if !c.Addr.IsValid() || c.Addr.Port() == 0 || c.Timeout <= 0 {
		return nil, fmt.Errorf("%w: SMTP_CHECK needs an address, a port and a positive timeout", ErrSpec)
	}
	if c.HeloName == "" || strings.ContainsAny(c.HeloName, "\r\n") {
		return nil, fmt.Errorf("%w: SMTP_CHECK helo_name %q: expected one non-empty line", ErrSpec, c.HeloName)
	}
	return &c, nil
}

// Check implements Checker.
func (c *SMTP) Check(ctx context.Context) Result {
	conn, err := c.Dialer.dial(ctx, c.Addr, c.Timeout)
	if err != nil {
		return Result{Err: err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReaderSize(conn, smtpMaxLine)
	step := func(send string, want string, what string) error {
		if err := conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
			return err
		}
		if send != "" {
			if _, err := conn.Write([]byte(send)); err != nil {
				return fmt.Errorf("%s: %w: write: %v", c.Addr, ErrSMTP, unwrapOp(err))
			}
		}
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if isTimeout(err) {
				return fmt.Errorf("%s: %w: %s: %w after %v", c.Addr, ErrSMTP, what, ErrTimeout, c.Timeout)
			}
			return fmt.Errorf("%s: %w: %s: %v", c.Addr, ErrSMTP, what, unwrapOp(err))
		}
		if want != "" && !strings.HasPrefix(string(line), want) {
			return fmt.Errorf("%s: %w: %s %q, want %s", c.Addr, ErrSMTP, what, strings.TrimSpace(string(line)), want)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// The rest of an overlong line is not a reply of its own.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
		}
		return nil
	}
	if err := step("", "220", "greeting"); err != nil {
		return Result{Err: err}
	}
	if err := step("HELO "+c.HeloName+"\r\n", "250", "reply to HELO"); err != nil {
		return Result{Err: err}
	}
	if err := step("QUIT\r\n", "", "reply to QUIT"); err != nil {
		return Result{Err: err}
	}
	return Result{}
}

func (c *SMTP) String() string {
	return fmt.Sprintf("SMTP_CHECK %s helo %q timeout %v%s", c.Addr, c.HeloName, c.Timeout, c.Dialer)
}
