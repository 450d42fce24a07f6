package keepalived

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Options change how a configuration is read. The zero value reads files with os.ReadFile
// and filepath.Glob, matches no conditional (@id) line and leaves ${_ENV ...} alone.
type Options struct {
	// ConfigID is keepalived's config-id (-i): lines "@ID ..." are kept only when ID
	// equals it, lines "@^ID ..." only when it does not. Empty matches no @ID line.
	ConfigID string
	// ReadFile reads a configuration file; nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Glob expands an include pattern (after brace expansion); nil means filepath.Glob.
	Glob func(pattern string) ([]string, error)
	// Getenv resolves ${_ENV NAME}; nil leaves such references unreplaced.
	Getenv func(name string) string
	// Warn, when set, receives every Warning as it is found, also when the parse then
	// fails (Config.Warnings has them only when it succeeds): for a configuration check
	// that reports warnings and errors together, as keepalived -t does.
	Warn func(Warning)
	// Strict makes errors of what keepalived logs and carries on from (an unknown
	// keyword, extra words on a line): for text that is not a keepalived.conf, such as
	// xlvsd --health-check's checker blocks.
	Strict bool
}

func (o *Options) readFile(name string) ([]byte, error) {
	if o.ReadFile != nil {
		return o.ReadFile(name)
	}
	return os.ReadFile(name)
}

func (o *Options) glob(pattern string) ([]string, error) {
	if o.Glob != nil {
		return o.Glob(pattern)
	}
	return filepath.Glob(pattern)
}

// Limits that keep hostile or broken input (and the fuzzer) bounded.
const (
	maxIncludeDepth = 16
	maxFiles        = 1024
	maxBraceExpand  = 256
	maxSubstRounds  = 32
	maxExpandDepth  = 64
	// maxExpandedLines bounds the lines multi-line parameters produce in one parse.
	maxExpandedLines = 1 << 16
	maxLineLen       = 1 << 20
	maxTokens        = 1 << 20
)

type tokKind uint8

const (
	tWord  tokKind = iota
	tOpen          // {
	tClose         // }
	tEOL           // end of a line
)

type token struct {
	kind tokKind
	text string
	pos  Pos
}

// loader reads one configuration: the lexer, the tree builder and the interpreter share
// it (options, errors and warnings, files read, tokens, parameters).
type loader struct {
	opts   Options
	errs   ErrorList
	warns  []Warning
	files  []string
	toks   []token
	params map[string]string
	stack  []string // files being read, for include-loop detection
	// expanded counts the lines multi-line parameters produced.
	expanded int
	// aborted: the block structure is broken; report it once.
	aborted bool
	// said holds every warning and error reported, so that one said again (the members
	// of a virtual_server_group share their block's lines) is reported once.
	said map[Warning]bool
}

// once reports whether (pos, msg) is new, and remembers it.
func (s *loader) once(pos Pos, msg string) bool {
	if s.said == nil {
		s.said = map[Warning]bool{}
	}
	k := Warning{Pos: pos, Msg: msg}
	if s.said[k] {
		return false
	}
	s.said[k] = true
	return true
}

func (s *loader) errorf(pos Pos, format string, args ...any) {
	s.addErr(pos, ErrSyntax, format, args...)
}

func (s *loader) addErr(pos Pos, kind error, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(s.errs) < maxErrors && s.once(pos, "E"+msg) {
		s.errs = append(s.errs, &Error{Pos: pos, Msg: msg, kind: kind})
	}
}

func (s *loader) warnf(pos Pos, format string, args ...any) {
	w := Warning{Pos: pos, Msg: fmt.Sprintf(format, args...)}
	if !s.once(pos, "W"+w.Msg) {
		return
	}
	s.warns = append(s.warns, w)
	if s.opts.Warn != nil {
		s.opts.Warn(w)
	}
}

func (s *loader) emit(k tokKind, text string, pos Pos) {
	if len(s.toks) >= maxTokens {
		if len(s.toks) == maxTokens {
			s.errorf(pos, "configuration too large: more than %d tokens", maxTokens)
			s.toks = append(s.toks, token{kind: tEOL, pos: pos})
		}
		return
	}
	s.toks = append(s.toks, token{kind: k, text: text, pos: pos})
}

// readFile lexes one file; from is the include statement's position (zero for the main
// file).
func (s *loader) readFile(name string, from Pos, kind string) {
	clean := filepath.Clean(name)
	for _, f := range s.stack {
		if f == clean {
			s.addErr(from, ErrInclude, "%s %s: include loop %s -> %s: remove one of the includes",
				kind, name, strings.Join(s.stack, " -> "), clean)
			return
		}
	}
	if len(s.stack) >= maxIncludeDepth {
		s.addErr(from, ErrInclude, "%s %s: includes nested deeper than %d levels", kind, name, maxIncludeDepth)
		return
	}
	if len(s.files) >= maxFiles {
		if len(s.files) == maxFiles {
			s.addErr(from, ErrInclude, "%s %s: more than %d files included", kind, name, maxFiles)
			s.files = append(s.files, name)
		}
		return
	}
	src, err := s.opts.readFile(name)
	if err != nil {
		pos, msg := from, fmt.Sprintf("%s %s: %v", kind, name, err)
		if from.File == "" {
			pos, msg = Pos{File: name}, fmt.Sprintf("read configuration: %v", err)
		}
		if len(s.errs) < maxErrors {
			s.errs = append(s.errs, &Error{Pos: pos, Msg: msg, kind: ErrInclude, cause: err})
		}
		return
	}
	s.files = append(s.files, name)
	s.stack = append(s.stack, clean)
	s.lexSource(name, src)
	s.stack = s.stack[:len(s.stack)-1]
}

// lexSource turns src (the text of file) into tokens, expanding conditional lines,
// parameter definitions and substitutions, and includes.
func (s *loader) lexSource(file string, src []byte) {
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		pos := Pos{File: file, Line: i + 1}
		text, ok := s.cleanLine(lines[i], pos)
		if !ok {
			continue
		}
		name, multi := s.line(text, pos, 0)
		if !multi {
			continue
		}
		// A definition whose value ends in '\' continues on the next lines, each but the
		// last ending in '\' (keepalived's read_line): a line left empty by its comment
		// is skipped; an empty line ends the definition.
		val := s.params[name]
		for i+1 < len(lines) {
			if strings.TrimSuffix(lines[i+1], "\r") == "" {
				break
			}
			i++
			next, ok := s.cleanLine(lines[i], Pos{File: file, Line: i + 1})
			next = strings.TrimSpace(next)
			if !ok || next == "" {
				continue
			}
			cont := strings.HasSuffix(next, `\`)
			next = strings.TrimSpace(strings.TrimSuffix(next, `\`))
			if next != "" {
				if val == "" {
					val = next
				} else {
					val += "\n" + next
				}
			}
			if !cont {
				break
			}
		}
		s.params[name] = val
	}
}

// line reads one line as keepalived's read_line does: a conditional "@ID" prefix, then a
// "$NAME=VALUE" definition, else parameter substitution, repeated on the result while it
// changes (so a substitution may yield a definition or a conditional line). A multi-line
// parameter used at the end of the line puts its first line there; its other lines
// follow, each read the same way in turn (defining, substituting and expanding further
// parameters with the values of that moment), all at the position of the line that used
// it. It returns the name of a multi-line definition the line starts (only for lines of
// a file: depth 0).
func (s *loader) line(text string, pos Pos, depth int) (string, bool) {
	if depth > maxExpandDepth {
		s.errorf(pos, "multi-line parameters nested deeper than %d levels: check for a parameter that uses itself", maxExpandDepth)
		return "", false
	}
	var after []string // lines of multi-line expansions still to read, in order
	for round := 0; ; round++ {
		if round > maxSubstRounds {
			s.errorf(pos, "parameter substitution does not terminate after %d rounds: a parameter refers to itself", maxSubstRounds)
			return "", false
		}
		var keep bool
		if text, keep = s.conditional(text); !keep {
			text = ""
			break
		}
		if name, val, ok := paramDef(text); ok {
			multi := strings.HasSuffix(val, `\`)
			if multi {
				val = strings.TrimSpace(strings.TrimSuffix(val, `\`))
			}
			if s.params == nil {
				s.params = map[string]string{}
			}
			s.params[name] = val
			if multi && depth == 0 && len(after) == 0 {
				return name, true
			}
			text = ""
			break
		}
		if !strings.Contains(text, "$") {
			break
		}
		out, rest, changed := s.substOnce(text, pos.File)
		if !changed {
			break
		}
		if len(out) > maxLineLen {
			s.errorf(pos, "parameter substitution makes the line longer than %d bytes: check for a parameter that refers to itself", maxLineLen)
			return "", false
		}
		text = out
		if rest != "" {
			// The inner expansion's lines come before what remains of an outer one.
			after = append(strings.Split(rest, "\n"), after...)
		}
	}
	s.statement(text, pos)
	for _, l := range after {
		if s.expanded++; s.expanded > maxExpandedLines {
			if s.expanded == maxExpandedLines+1 {
				s.errorf(pos, "multi-line parameters expand to more than %d lines: check for a parameter that uses itself", maxExpandedLines)
			}
			return "", false
		}
		s.line(l, pos, depth+1)
	}
	return "", false
}

// cleanLine strips the line end and the comment, refusing absurdly long lines.
func (s *loader) cleanLine(line string, pos Pos) (string, bool) {
	if len(line) > maxLineLen {
		s.errorf(pos, "line longer than %d bytes", maxLineLen)
		return "", false
	}
	return stripComment(strings.TrimSuffix(line, "\r")), true
}

// conditional applies keepalived's "@ID" / "@^ID" line prefix.
func (s *loader) conditional(text string) (string, bool) {
	t := strings.TrimLeft(text, " \t")
	if !strings.HasPrefix(t, "@") {
		return text, true
	}
	id, rest := t[1:], ""
	if i := strings.IndexAny(id, " \t"); i >= 0 {
		id, rest = id[:i], id[i+1:]
	}
	neg := strings.HasPrefix(id, "^")
	id = strings.TrimPrefix(id, "^")
	match := id != "" && id == s.opts.ConfigID
	if match == neg {
		return "", false
	}
	return rest, true
}

// paramDef recognises "$NAME=VALUE" (leading blanks allowed, none before '=').
func paramDef(text string) (name, val string, ok bool) {
	t := strings.TrimLeft(text, " \t")
	if !strings.HasPrefix(t, "$") {
		return "", "", false
	}
	n := nameLen(t[1:])
	if n == 0 || 1+n >= len(t) || t[1+n] != '=' {
		return "", "", false
	}
	return t[1 : 1+n], strings.TrimSpace(t[2+n:]), true
}

// nameLen is the length of the parameter name at the start of s.
func nameLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return i
		}
	}
	return len(s)
}

// substOnce replaces, left to right, $NAME (followed by a blank, ',', ')' or the end)
// and ${NAME} by defined parameters; undefined names stay as written. A multi-line
// parameter is replaced only where it ends the line (as keepalived): by its first line,
// its other lines returned in rest.
func (s *loader) substOnce(text, file string) (out, rest string, changed bool) {
	var b strings.Builder
	for i := 0; i < len(text); {
		c := text[i]
		if c != '$' || i+1 >= len(text) {
			b.WriteByte(c)
			i++
			continue
		}
		name, end := "", -1
		if text[i+1] == '{' {
			if e := strings.IndexByte(text[i+2:], '}'); e >= 0 {
				name, end = text[i+2:i+2+e], i+3+e
			}
		} else if n := nameLen(text[i+1:]); n > 0 {
			after := i + 1 + n
			if after == len(text) || strings.IndexByte(" \t,)", text[after]) >= 0 {
				name, end = text[i+1:after], after
			}
		}
		if end < 0 {
			b.WriteByte(c)
			i++
			continue
		}
		v, ok := s.lookup(name, file)
		if !ok {
			b.WriteByte(c)
			i++
			continue
		}
		if first, more, multi := strings.Cut(v, "\n"); multi {
			if strings.TrimSpace(text[end:]) != "" {
				b.WriteByte(c) // a multi-line parameter must end the line
				i++
				continue
			}
			b.WriteString(first)
			return b.String(), more, true
		}
		b.WriteString(v)
		i = end
		changed = true
	}
	return b.String(), "", changed
}

// lookup resolves a parameter name, including keepalived's predefined ones.
func (s *loader) lookup(name, file string) (string, bool) {
	if v, ok := s.params[name]; ok {
		return v, true
	}
	switch name {
	case "_PWD":
		return filepath.Dir(file), true
	case "_INSTANCE":
		return s.opts.ConfigID, true
	case "_HASH":
		return "#", true
	case "_BANG":
		return "!", true
	}
	if v, ok := strings.CutPrefix(name, "_ENV "); ok && s.opts.Getenv != nil {
		return s.opts.Getenv(strings.TrimSpace(v)), true
	}
	return "", false
}

// stripComment cuts text at the first '#' or '!' outside quotes.
func stripComment(text string) string {
	var q byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case q != 0:
			if c == '\\' {
				i++
			} else if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '#' || c == '!':
			return text[:i]
		}
	}
	return text
}

var includeKinds = map[string]bool{
	"include": true, "includer": true, "includem": true, "includew": true, "includeb": true, "includea": true,
}

// statement lexes one logical line: an include, or words and braces.
func (s *loader) statement(text string, pos Pos) {
	t := strings.TrimSpace(text)
	if t == "" {
		return
	}
	if strings.HasPrefix(t, "~SEQ") || strings.HasPrefix(t, "~LST") {
		s.errorf(pos, "%s blocks are not supported by xlvs: write the generated lines out", t[:4])
		return
	}
	fields := strings.Fields(t)
	if includeKinds[fields[0]] {
		s.include(fields[0], fields[1:], pos)
		return
	}
	s.tokenize(t, pos)
}

func (s *loader) include(kind string, patterns []string, pos Pos) {
	if len(patterns) == 0 {
		s.errorf(pos, "%s: expected a file name or pattern after %s", kind, kind)
		return
	}
	for _, p := range patterns {
		p = unquote(p)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(pos.File), p)
		}
		var matches []string
		for _, pat := range expandBraces(p) {
			m, err := s.opts.glob(pat)
			if err != nil {
				s.addErr(pos, ErrInclude, "%s %s: bad pattern: %v", kind, pat, err)
				continue
			}
			matches = append(matches, m...)
		}
		if len(matches) == 0 {
			if kind == "includem" || kind == "includea" {
				s.addErr(pos, ErrInclude, "%s %s: no file matches", kind, p)
			} else {
				s.warnf(pos, "%s %s: no file matches, nothing included", kind, p)
			}
			continue
		}
		for _, m := range matches {
			s.readFile(m, pos, kind)
		}
	}
}

func unquote(p string) string {
	if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
		return p[1 : len(p)-1]
	}
	return p
}

// expandBraces expands csh-style {a,b} alternatives, as glob(3) with GLOB_BRACE does.
func expandBraces(p string) []string {
	out := []string{}
	var rec func(p string)
	rec = func(p string) {
		if len(out) >= maxBraceExpand {
			return
		}
		open := strings.IndexByte(p, '{')
		if open < 0 {
			out = append(out, p)
			return
		}
		depth, end := 0, -1
		var commas []int
		for i := open; i < len(p) && end < 0; i++ {
			switch p[i] {
			case '{':
				depth++
			case '}':
				depth--
				if depth == 0 {
					end = i
				}
			case ',':
				if depth == 1 {
					commas = append(commas, i)
				}
			}
		}
		if end < 0 {
			out = append(out, p)
			return
		}
		prefix, suffix := p[:open], p[end+1:]
		start := open + 1
		for _, c := range append(commas, end) {
			rec(prefix + p[start:c] + suffix)
			start = c + 1
		}
	}
	rec(p)
	return out
}

// tokenize splits a line into words and braces. Quotes (" or ') group text with blanks
// into one word and are removed; backslash escapes work inside quotes. A line with an
// error contributes no tokens, so the error does not cascade.
func (s *loader) tokenize(t string, pos Pos) {
	var line []token
	for i := 0; i < len(t); {
		c := t[i]
		switch c {
		case ' ', '\t', '\v', '\f':
			i++
			continue
		case '{':
			line = append(line, token{kind: tOpen, text: "{", pos: pos})
			i++
			continue
		case '}':
			line = append(line, token{kind: tClose, text: "}", pos: pos})
			i++
			continue
		}
		var b strings.Builder
	word:
		for i < len(t) {
			c := t[i]
			switch c {
			case ' ', '\t', '\v', '\f', '{', '}':
				break word
			case '"', '\'':
				i++
				closed := false
				for i < len(t) {
					if t[i] == c {
						closed = true
						i++
						break
					}
					if t[i] == '\\' && i+1 < len(t) {
						i = unescape(t, i+1, &b)
						continue
					}
					b.WriteByte(t[i])
					i++
				}
				if !closed {
					s.errorf(pos, "unterminated quoted string: expected a closing %c", c)
					return
				}
			default:
				b.WriteByte(c)
				i++
			}
		}
		line = append(line, token{kind: tWord, text: b.String(), pos: pos})
	}
	for _, tk := range line {
		s.emit(tk.kind, tk.text, tk.pos)
	}
	s.emit(tEOL, "", pos)
}

// unescape decodes the escape whose character is at t[i], appends it and returns the
// index after it.
func unescape(t string, i int, b *strings.Builder) int {
	c := t[i]
	switch c {
	case 'a':
		b.WriteByte('\a')
	case 'b':
		b.WriteByte('\b')
	case 'E':
		b.WriteByte(0x1b)
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'v':
		b.WriteByte('\v')
	case 'c':
		if i+1 < len(t) {
			b.WriteByte(t[i+1] & 0x1f)
			return i + 2
		}
		b.WriteByte(c)
	case 'x':
		j := i + 1
		for j < len(t) && j < i+3 && isHex(t[j]) {
			j++
		}
		if j == i+1 {
			b.WriteByte(c)
			return i + 1
		}
		v, _ := strconv.ParseUint(t[i+1:j], 16, 8)
		b.WriteByte(byte(v))
		return j
	default:
		if c >= '0' && c <= '7' {
			j := i
			for j < len(t) && j < i+3 && t[j] >= '0' && t[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(t[i:j], 8, 16)
			b.WriteByte(byte(v))
			return j
		}
		b.WriteByte(c)
	}
	return i + 1
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
