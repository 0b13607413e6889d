package correlate

import (
	"encoding/json"
	"strconv"
)

// A jsonLeaf is a string or integer leaf of a JSON document: its path
// (indices kept: items.0.id), its key (the enclosing object's key, or the
// array's), its decoded text and where its raw text lies.
type jsonLeaf struct {
	path, key, text string
	start, end      int
	quoted          bool
}

// scanJSON calls leaf for each string and integer leaf of doc, at most
// maxLeaves, at most maxDepth deep; a malformed document ends the scan
// where it breaks. It is written here rather than with encoding/json's
// Decoder because a translation needs each leaf's byte span, which the
// Decoder does not give for a string's start.
func scanJSON(doc []byte, leaf func(jsonLeaf)) {
	s := &scanner{doc: doc, leaf: leaf}
	s.value("", "", 0)
}

type scanner struct {
	doc  []byte
	i    int
	n    int
	leaf func(jsonLeaf)
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

// value reads one value at path, whose key is key.
func (s *scanner) value(path, key string, depth int) {
	s.ws()
	if s.bad || s.i >= len(s.doc) || s.n >= maxLeaves {
		s.bad = true
		return
	}
	switch c := s.doc[s.i]; {
	case c == '{':
		if depth >= maxDepth {
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
			s.value(path+"."+k, k, depth+1)
			if s.bad {
				return
			}
		}
	case c == '[':
		if depth >= maxDepth {
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
			s.value(path+"."+strconv.Itoa(idx), key, depth+1)
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
		s.leaf(jsonLeaf{path: path, key: key, text: t, start: start, end: s.i, quoted: true})
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
			s.leaf(jsonLeaf{path: path, key: key, text: raw, start: start, end: s.i})
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
		switch s.doc[j] {
		case '\\':
			escaped = true
			j++
		case '"':
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
