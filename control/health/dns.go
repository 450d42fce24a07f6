package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ErrDNS is a DNS answer with an error code.
var ErrDNS = errors.New("DNS query failed")

// DNSTypes are the query types DNS_CHECK sends, by name (RFC 1035, RFC 3596).
var DNSTypes = map[string]uint16{"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}

// dnsBufSize is the largest answer read (keepalived's DNS_BUFFER_SIZE is 768).
const dnsBufSize = 768

// DNS is keepalived's DNS_CHECK (check_dns.c, acassen/keepalived): one query of Type for
// Name, class IN, recursion desired, with a random ID, over UDP; the server is up when
// an answer with that ID (QR set) comes within Timeout with RCODE 0 (NOERROR), whatever
// its answer section holds. Datagrams with another ID, and queries, are skipped as
// keepalived skips them.
type DNS struct {
	Addr    netip.AddrPort
	Timeout time.Duration
	Type    string // one of DNSTypes
	Name    string // "." or a domain name
	Dialer  Dialer

	query []byte // the question, without the ID
}

// NewDNS checks c and builds its question.
func NewDNS(c DNS) (*DNS, error) {
	if !c.Addr.IsValid() || c.Addr.Port() == 0 || c.Timeout <= 0 {
		return nil, fmt.Errorf("%w: DNS_CHECK needs an address, a port and a positive timeout", ErrSpec)
	}
	t, ok := DNSTypes[strings.ToUpper(c.Type)]
	if !ok {
		return nil, fmt.Errorf("%w: DNS_CHECK type %q: expected A, NS, CNAME, SOA, MX, TXT or AAAA", ErrSpec, c.Type)
	}
	q, err := dnsQuestion(c.Name, t)
	if err != nil {
		return nil, fmt.Errorf("%w: DNS_CHECK name %q: %v", ErrSpec, c.Name, err)
	}
	c.Type, c.query = strings.ToUpper(c.Type), q
	return &c, nil
}

// dnsQuestion is a query message without its ID: flags RD, one question.
func dnsQuestion(name string, typ uint16) ([]byte, error) {
	b := []byte{0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0} // flags RD, QDCOUNT 1
	if name != "." {
		for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
			if l == "" || len(l) > 63 {
				return nil, errors.New("expected labels of 1 to 63 characters separated by dots")
			}
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, 1) // IN
	if len(b) > 2+255+4+10 {
		return nil, errors.New("longer than 255 bytes")
	}
	return b, nil
}

// Check implements Checker.
func (c *DNS) Check(ctx context.Context) Result {
	conn, err := c.Dialer.dialNet(ctx, "udp", c.Addr, c.Timeout)
	if err != nil {
		return Result{Err: err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	id := uint16(rand.Uint32())
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(c.query)), id)
	msg = append(msg, c.query...)
	if err := conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
		return Result{Err: err}
	}
	if _, err := conn.Write(msg); err != nil {
		return Result{Err: fmt.Errorf("%s: %w: send: %v", c.Addr, ErrDNS, unwrapOp(err))}
	}
	buf := make([]byte, dnsBufSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if isTimeout(err) {
				return Result{Err: fmt.Errorf("%s: %w: no answer: %w after %v", c.Addr, ErrDNS, ErrTimeout, c.Timeout)}
			}
			return Result{Err: fmt.Errorf("%s: %w: %v", c.Addr, ErrDNS, unwrapOp(err))}
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != id || buf[2]&0x80 == 0 {
			continue // not our answer
		}
		if rcode := buf[3] & 0x0f; rcode != 0 {
			return Result{Err: fmt.Errorf("%s: %w: %s %s answered with rcode %d", c.Addr, ErrDNS, c.Type, c.Name, rcode)}
		}
		return Result{}
	}
}

func (c *DNS) String() string {
	return fmt.Sprintf("DNS_CHECK %s %s %s timeout %v%s", c.Addr, c.Type, c.Name, c.Timeout, c.Dialer)
}

// isTimeout reports whether err is a deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
