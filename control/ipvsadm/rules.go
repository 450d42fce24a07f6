package ipvsadm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"xlvs/control/api"
)

// MaxRuleLine is the longest rule line ParseRules reads.
const MaxRuleLine = 64 << 10

// RuleError is a rule that does not parse, with its 1-based input line.
type RuleError struct {
	Line int
	Err  error
}

func (e *RuleError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *RuleError) Unwrap() error { return e.Err }

// ParseRules reads rules (ipvsadm -R input) with SystemResolver. See Parser.ParseRules.
func ParseRules(r io.Reader) (*api.Request, error) { return Parser{}.ParseRules(r) }

// ParseRules reads rules in the -S format, one command line per input line, as ipvsadm
// -R does: words are separated by blanks, everything from '#' to the end of the line is a
// comment, blank lines are skipped, and a leading "ipvsadm" or "xlvsadm" word is ignored.
// It returns one OpRestore request whose Batch holds every line's request, in order, each
// with its Line. Only commands that change the table may appear (-A -E -D -C -a -e -d -Z
// --set --start-daemon --stop-daemon, and DPVS's -P -Q). The first line that does not
// parse is returned as a *RuleError naming it, and nothing is to be sent.
func (p Parser) ParseRules(r io.Reader) (*api.Request, error) {
	req := &api.Request{Version: api.Version, Op: api.OpRestore}
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		text, err := readRuleLine(br)
		if errors.Is(err, io.EOF) && text == "" {
			break
		}
		if errors.Is(err, errLineTooLong) {
			return nil, &RuleError{Line: line, Err: fmt.Errorf("line longer than %d bytes", MaxRuleLine)}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		words := ruleWords(text)
		if len(words) == 0 {
			continue
		}
		cmd, perr := p.Parse(words)
		if perr != nil {
			return nil, &RuleError{Line: line, Err: perr}
		}
		switch cmd.Kind {
		case KindAddService, KindEditService, KindDelService, KindClear, KindAddDest, KindEditDest,
			KindDelDest, KindZero, KindSetTimeouts, KindStartDaemon, KindStopDaemon, KindAddLaddr, KindDelLaddr,
			KindAddMark, KindDelMark:
		default:
			return nil, &RuleError{Line: line, Err: fmt.Errorf(
				"the '%s' command cannot be restored (rules may only change the table: -A -E -D -C -a -e -d -Z -P -Q --set --start-daemon --stop-daemon --add-mark --del-mark)", cmd.Kind)}
		}
		for _, q := range cmd.Requests {
			q.Line = line
			req.Batch = append(req.Batch, q)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	return req, nil
}

var errLineTooLong = errors.New("line too long")

// readRuleLine returns the next line without its newline; err is io.EOF with the last
// line when the input ends without a newline.
func readRuleLine(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		if sb.Len()+len(chunk) > MaxRuleLine+1 {
			return "", errLineTooLong
		}
		sb.Write(chunk)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return strings.TrimSuffix(sb.String(), "\n"), err
	}
}

// ruleWords splits a rule line into words: comments cut, blanks (space, tab, CR)
// separate, a leading program name dropped.
func ruleWords(text string) []string {
	text, _, _ = strings.Cut(text, "#")
	words := strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
	if len(words) > 0 {
		if b := path.Base(words[0]); b == "ipvsadm" || b == Program {
			words = words[1:]
		}
	}
	return words
}
