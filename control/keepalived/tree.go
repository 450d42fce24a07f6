package keepalived

import "strings"

// node is one statement: its words (keyword first) and, when it opens a block, the
// statements inside.
type node struct {
	pos      Pos
	words    []string
	block    bool
	children []*node
}

func (n *node) keyword() string { return n.words[0] }

// args are the words after the keyword.
func (n *node) args() []string { return n.words[1:] }

// text is the statement as written, for messages.
func (n *node) text() string { return strings.Join(n.words, " ") }

// buildTree turns the token stream into statements. Statements end at a line end or at
// a brace; a block opens with '{' on the statement's line or alone on a following line.
func (s *loader) buildTree() []*node {
	i := 0
	return s.block(&i, nil, 0)
}

// maxDepth bounds block nesting (keepalived's deepest is four levels).
const maxDepth = 32

func (s *loader) block(i *int, opener *node, depth int) []*node {
	var out []*node
	if depth > maxDepth {
		s.errorf(opener.pos, "blocks nested deeper than %d levels: expected '}'", maxDepth)
		// Skip to the end: the structure is beyond repair.
		*i = len(s.toks)
		s.aborted = true
		return nil
	}
	toks := s.toks
	for *i < len(toks) {
		t := toks[*i]
		switch t.kind {
		case tEOL:
			*i++
		case tClose:
			*i++
			if opener == nil {
				s.errorf(t.pos, "unexpected '}': no block is open here")
				continue
			}
			return out
		case tOpen:
			*i++
			s.errorf(t.pos, "unexpected '{': expected a keyword before it")
			// Parse the block anyway so its closing brace does not end the outer one.
			s.block(i, &node{pos: t.pos, words: []string{"{"}}, depth+1)
		case tWord:
			n := &node{pos: t.pos}
			for *i < len(toks) && toks[*i].kind == tWord {
				n.words = append(n.words, toks[*i].text)
				*i++
			}
			// A '{' may also come alone on one of the next lines.
			j := *i
			for j < len(toks) && toks[j].kind == tEOL {
				j++
			}
			if j < len(toks) && toks[j].kind == tOpen {
				*i = j + 1
				n.block = true
				n.children = s.block(i, n, depth+1)
			}
			out = append(out, n)
		}
	}
	if opener != nil && !s.aborted {
		s.aborted = true
		s.errorf(lastPos(toks, opener.pos), "unexpected end of file: expected '}' to close %q opened at %s", opener.text(), opener.pos)
	}
	return out
}

func lastPos(toks []token, def Pos) Pos {
	if len(toks) == 0 {
		return def
	}
	return toks[len(toks)-1].pos
}
