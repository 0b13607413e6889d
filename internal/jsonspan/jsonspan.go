// Package jsonspan finds the string and integer leaves of a JSON
// document with where their raw text lies, for those who replace a value
// in place (a translated id, a credential's pseudonym) and leave every
// other byte as it was. It is written here rather than with
// encoding/json's Decoder because the Decoder does not give a string's
// start.
package jsonspan

import (
	"encoding/json"
	"strconv"
)

// A Leaf is a string or integer leaf of a JSON document.
type Leaf struct {
	s *scanner // its path, while the callback runs
	// Key is the enclosing object's key (an array's element: the array's
	// key), Parent the key the object holding it has (.order.id: "order";
	// .items.0.id: "items"; at the top: "").
	Key, Parent string
	Text        string // decoded
	Start, End  int    // its raw text, quotes included
	Quoted      bool   // a string (else an integer)
}

// Path is the leaf's path, indices kept (.items.0.id). It is made only
// when asked, and only during the callback.
func (l Leaf) Path() string {
	var b []byte
	for _, p := range l.s.path {
		b = append(b, '.')
		if p.key != "" {
			b = append(b, p.key...)
		} else {
			b = strconv.AppendInt(b, int64(p.index), 10)
		}
	}
	return string(b)
}

// pathPart is an object member's key or an array element's index.
type pathPart struct {
	key   string
	index int
}

// Limits bound a scan.
type Limits struct{ Leaves, Depth int }

// Scan calls leaf for each string and integer leaf of doc, at most
// lim.Leaves, at most lim.Depth deep. It reports whether it read the
// whole document: a malformed or too large one ends the scan where it
// breaks.
func Scan(doc []byte, lim Limits, leaf func(Leaf)) bool {
	s := &scanner{doc: doc, leaf: leaf, lim: lim}
	s.value("", "", 0)
	s.ws()
	return !s.bad && s.i == len(doc)
}

type scanner struct {
	doc  []byte
	i    int
	n    int
	lim  Limits
	leaf func(Leaf)
	path []pathPart
	bad  bool
}

func (s *scanner) ws() {
	for s.i < len(s.doc) {
		switch s.doc[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// value reads one value at s.path, whose key is key, in an object whose
// own key is parent.
func (s *scanner) value(key, parent string, depth int) {
	s.ws()
	if s.bad || s.i >= len(s.doc) || s.n >= s.lim.Leaves {
		s.bad = true
		return
	}
	switch c := s.doc[s.i]; {
	case c == '{':
		if depth >= s.lim.Depth {
			s.bad = true
			return
		}
		s.i++
		for first := true; ; first = false {
			s.ws()
			if s.i < len(s.doc) && s.doc[s.i] == '}' {
				s.i++
				return
			}
			if !first {
				if s.i >= len(s.doc) || s.doc[s.i] != ',' {
					s.bad = true
					return
				}
				s.i++
				s.ws()
			}
			k, ok := s.str()
			if !ok {
				s.bad = true
				return
			}
			s.ws()
			if s.i >= len(s.doc) || s.doc[s.i] != ':' {
				s.bad = true
				return
			}
			s.i++
			s.path = append(s.path, pathPart{key: k})
			s.value(k, key, depth+1)
			s.path = s.path[:len(s.path)-1]
			if s.bad {
				return
			}
		}
	case c == '[':
		if depth >= s.lim.Depth {
			s.bad = true
			return
		}
		s.i++
		for idx := 0; ; idx++ {
			s.ws()
			if s.i < len(s.doc) && s.doc[s.i] == ']' {
				s.i++
				return
			}
			if idx > 0 {
				if s.i >= len(s.doc) || s.doc[s.i] != ',' {
					s.bad = true
					return
				}
				s.i++
			}
			s.path = append(s.path, pathPart{index: idx})
			s.value(key, parent, depth+1)
			s.path = s.path[:len(s.path)-1]
			if s.bad {
				return
			}
		}
	case c == '"':
		start := s.i
		t, ok := s.str()
		if !ok {
			s.bad = true
			return
		}
		s.n++
		s.leaf(Leaf{s: s, Key: key, Parent: parent, Text: t, Start: start, End: s.i, Quoted: true})
	default:
		start := s.i
		for s.i < len(s.doc) {
			c := s.doc[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				break
			}
			s.i++
		}
		if s.i == start {
			s.bad = true
			return
		}
		raw := string(s.doc[start:s.i])
		if _, err := strconv.ParseInt(raw, 10, 64); err == nil {
			s.n++
			s.leaf(Leaf{s: s, Key: key, Parent: parent, Text: raw, Start: start, End: s.i})
		}
	}
}

// str reads a JSON string and returns it decoded.
func (s *scanner) str() (string, bool) {
	if s.i >= len(s.doc) || s.doc[s.i] != '"' {
		return "", false
	}
	start := s.i
	escaped := false
	for j := s.i + 1; j < len(s.doc); j++ {
		switch c := s.doc[j]; {
		case c < 0x20:
			return "", false // JSON escapes control characters
		case c >= 0x80:
			escaped = true // decoded as encoding/json does: broken UTF-8 becomes U+FFFD
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			s.i = j + 1
			raw := s.doc[start:s.i]
			if !escaped {
				return string(raw[1 : len(raw)-1]), true
			}
			var out string
			if json.Unmarshal(raw, &out) != nil {
				return "", false
			}
			return out, true
		}
	}
	return "", false
}
