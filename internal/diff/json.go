package diff

import (
	"encoding/json"
	"errors"
	"hash/maphash"
	"math"
	"math/big"
	"slices"
	"strconv"
)

// A small JSON parser of its own: encoding/json's decode into any costs
// a map per object and an interface per value, several times what the
// comparison may spend per exchange (see BenchmarkCompareJSON). This one
// keeps values as views into the body, children as index ranges into one
// slice, and a hash per subtree computed bottom-up, so that equal subtrees
// are skipped in one comparison and arrays can be aligned by hash.

// jnode holds no pointers (spans are offsets into the body): the garbage
// collector does not scan the node slice, and filling it costs no write
// barriers.
type jnode struct {
	kind  byte   // '{' object, '[' array, '"' string, '0' number, 'b' bool, 'n' null
	key   span   // the member name (raw, with quotes) in an object
	raw   span   // the value's bytes
	hash  uint64 // of the value: equal values hash equal (1.0 and 1, members in any order)
	first int32  // children: doc.kids[first : first+n]
	n     int32
}

type span struct{ start, end int32 }

func (d *jdoc) of(s span) []byte { return d.src[s.start:s.end] }

type jdoc struct {
	nodes []jnode
	kids  []int32
	stack []int32
	src   []byte
	pos   int
	depth int
}

var seed = maphash.MakeSeed()

var errJSON = errors.New("diff: invalid JSON")

const maxDepth = 512

func parseJSON(b []byte) (*jdoc, error) {
	d := &jdoc{src: b, nodes: make([]jnode, 0, len(b)/10+4)}
	if _, err := d.value(); err != nil {
		return nil, err
	}
	d.ws()
	if d.pos != len(d.src) {
		return nil, errJSON
	}
	d.stack = nil
	return d, nil
}

func (d *jdoc) ws() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// value parses the value at pos and returns its node's index.
func (d *jdoc) value() (int32, error) {
	d.ws()
	if d.pos >= len(d.src) {
		return 0, errJSON
	}
	idx := int32(len(d.nodes))
	d.nodes = append(d.nodes, jnode{})
	start := d.pos
	var n jnode
	switch c := d.src[d.pos]; {
	case c == '{' || c == '[':
		d.depth++
		if d.depth > maxDepth {
			return 0, errJSON
		}
		n.kind = c
		d.pos++
		base := len(d.stack)
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		d.ws()
		if d.pos < len(d.src) && d.src[d.pos] == close {
			d.pos++
		} else {
			for {
				var key span
				if c == '{' {
					d.ws()
					ks := d.pos
					if err := d.str(); err != nil {
						return 0, err
					}
					key = span{int32(ks), int32(d.pos)}
					d.ws()
					if d.pos >= len(d.src) || d.src[d.pos] != ':' {
						return 0, errJSON
					}
					d.pos++
				}
				ci, err := d.value()
				if err != nil {
					return 0, err
				}
				d.nodes[ci].key = key
				d.stack = append(d.stack, ci)
				d.ws()
				if d.pos >= len(d.src) {
					return 0, errJSON
				}
				if d.src[d.pos] == ',' {
					d.pos++
					continue
				}
				if d.src[d.pos] != close {
					return 0, errJSON
				}
				d.pos++
				break
			}
		}
		kids := d.stack[base:]
		n.first, n.n = int32(len(d.kids)), int32(len(kids))
		var h uint64
		if c == '{' {
			// Members in any order hash alike: a sum of mixed pairs.
			for _, k := range kids {
				h += mix(hashString(d.of(d.nodes[k].key)) ^ mix(d.nodes[k].hash+1))
			}
			h = mix(h ^ 0x6f)
		} else {
			h = 0x5b
			for _, k := range kids {
				h = mix(h*31 + d.nodes[k].hash)
			}
		}
		n.hash = h
		d.kids = append(d.kids, kids...)
		d.stack = d.stack[:base]
		d.depth--
	case c == '"':
		if err := d.str(); err != nil {
			return 0, err
		}
		n.kind = '"'
		n.hash = hashString(d.src[start:d.pos])
	case c == 't' || c == 'f' || c == 'n':
		word := "null"
		n.kind = 'n'
		if c == 't' {
			word, n.kind = "true", 'b'
		} else if c == 'f' {
			word, n.kind = "false", 'b'
		}
		if len(d.src)-d.pos < len(word) || string(d.src[d.pos:d.pos+len(word)]) != word {
			return 0, errJSON
		}
		d.pos += len(word)
		n.hash = maphash.Bytes(seed, d.src[start:d.pos])
	default:
		for d.pos < len(d.src) {
			switch x := d.src[d.pos]; {
			case x >= '0' && x <= '9', x == '-', x == '+', x == '.', x == 'e', x == 'E':
				d.pos++
				continue
			}
			break
		}
		f, err := strconv.ParseFloat(string(d.src[start:d.pos]), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, errJSON
		}
		n.kind = '0'
		// By value: 1.0 and 1e0 hash as 1. (Numbers equal as float64 but
		// not exactly are told apart by sameNumber when hashes differ
		// elsewhere; a collision here only hides a difference beyond
		// float64's precision.)
		n.hash = mix(math.Float64bits(f+0) ^ 0x30)
	}
	n.raw = span{int32(start), int32(d.pos)}
	d.nodes[idx] = n
	return idx, nil
}

// str scans a string at pos.
func (d *jdoc) str() error {
	if d.pos >= len(d.src) || d.src[d.pos] != '"' {
		return errJSON
	}
	for i := d.pos + 1; i < len(d.src); i++ {
		switch d.src[i] {
		case '\\':
			i++
		case '"':
			d.pos = i + 1
			return nil
		}
	}
	return errJSON
}

// hashString hashes a raw JSON string by its decoded value, so that
// "\u0041" and "A" are equal.
func hashString(raw []byte) uint64 {
	for _, c := range raw {
		if c == '\\' {
			return maphash.String(seed, unquote(raw))
		}
	}
	return maphash.Bytes(seed, raw[1:len(raw)-1])
}

func unquote(raw []byte) string {
	for _, c := range raw {
		if c == '\\' {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s
			}
			return string(raw)
		}
	}
	return string(raw[1 : len(raw)-1])
}

func typeName(k byte) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case '0':
		return "number"
	case 'b':
		return "bool"
	}
	return "null"
}

// sameNumber compares numbers by value at full precision.
func sameNumber(a, b []byte) bool {
	x, ok1 := new(big.Float).SetPrec(256).SetString(string(a))
	y, ok2 := new(big.Float).SetPrec(256).SetString(string(b))
	return ok1 && ok2 && x.Cmp(y) == 0
}

// jwalker compares two parsed documents, building the field path and its
// key in byte buffers so that only differences allocate strings.
type jwalker struct {
	a, b      *jdoc
	opts      *Options
	out       []Difference
	path, key []byte
}

func isIdent(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// appendMember appends ".name" or ["name"] to buf.
func appendMember(buf, rawKey []byte) []byte {
	name := rawKey[1 : len(rawKey)-1]
	if isIdent(name) {
		return append(append(buf, '.'), name...)
	}
	return append(append(append(buf, '['), strconv.Quote(unquote(rawKey))...), ']')
}

func (w *jwalker) add(kind Kind, x, y *jnode) {
	d := Difference{Field: string(w.path), Key: string(w.key), Kind: kind}
	if x != nil {
		d.Ref = renderBytes(w.a.of(x.raw))
	}
	if y != nil {
		d.Cand = renderBytes(w.b.of(y.raw))
	}
	if kind == Order {
		d.Key += ":order" // its own key: a set's order is noise, its content not
	}
	if kind == Changed && x.kind != '{' && x.kind != '[' {
		d.RefShape, d.CandShape = jsonShape(w.a, x), jsonShape(w.b, y)
		d.RefTime, d.CandTime = instant(scalarText(w.a, x), d.RefShape), instant(scalarText(w.b, y), d.CandShape)
	}
	w.out = append(w.out, d)
}

// scalarText is a scalar's text as read: a string unquoted.
func scalarText(d *jdoc, n *jnode) string {
	if n.kind == '"' {
		return unquote(d.of(n.raw))
	}
	return string(d.of(n.raw))
}

func jsonShape(d *jdoc, n *jnode) string {
	switch n.kind {
	case '"':
		return Shape(unquote(d.of(n.raw)))
	case '0':
		return NumberShape(d.of(n.raw))
	}
	return typeName(n.kind)
}

func (w *jwalker) walk(ai, bi int32) {
	x, y := &w.a.nodes[ai], &w.b.nodes[bi]
	if x.hash == y.hash {
		return
	}
	if x.kind != y.kind {
		w.add(Type, x, y)
		return
	}
	switch x.kind {
	case '{':
		w.object(x, y)
	case '[':
		w.array(x, y)
	case '0':
		if !sameNumber(w.a.of(x.raw), w.b.of(y.raw)) {
			w.add(Changed, x, y)
		}
	case '"':
		if a, b := unquote(w.a.of(x.raw)), unquote(w.b.of(y.raw)); a != b && !SameInstant(a, b) {
			w.add(Changed, x, y)
		}
	default:
		w.add(Changed, x, y)
	}
}

func (w *jwalker) object(x, y *jnode) {
	ak := w.a.kids[x.first : x.first+x.n]
	bk := w.b.kids[y.first : y.first+y.n]
	var usedBuf [64]bool
	used := usedBuf[:0]
	if len(bk) <= len(usedBuf) {
		used = usedBuf[:len(bk)]
	} else {
		used = make([]bool, len(bk))
	}
	pl, kl := len(w.path), len(w.key)
	for i, ci := range ak {
		c := &w.a.nodes[ci]
		// Members usually come in the same order: look there first.
		j := -1
		for k := range bk {
			at := (i + k) % len(bk)
			if !used[at] && string(w.b.of(w.b.nodes[bk[at]].key)) == string(w.a.of(c.key)) {
				j = at
				break
			}
		}
		w.path, w.key = appendMember(w.path, w.a.of(c.key)), appendMember(w.key, w.a.of(c.key))
		if j < 0 {
			w.add(Missing, c, nil)
		} else {
			used[j] = true
			w.walk(ci, bk[j])
		}
		w.path, w.key = w.path[:pl], w.key[:kl]
	}
	for j, ci := range bk {
		if !used[j] {
			c := &w.b.nodes[ci]
			w.path, w.key = appendMember(w.path, w.b.of(c.key)), appendMember(w.key, w.b.of(c.key))
			w.add(Extra, nil, c)
			w.path, w.key = w.path[:pl], w.key[:kl]
		}
	}
}

// array aligns the elements by value: a pure reordering is one Order
// difference on the array; otherwise elements are matched by a line-diff
// of their hashes (or as multisets, for an unordered array), elements
// left in the same gap on both sides are compared field by field, and the
// rest are missing or extra. Objects are matched by their identity: their
// members less those of a volatile shape (times, ids generated per
// response), so that elements carrying their own noise still align.
func (w *jwalker) array(x, y *jnode) {
	ak := w.a.kids[x.first : x.first+x.n]
	bk := w.b.kids[y.first : y.first+y.n]
	ah, bh := make([]uint64, len(ak)), make([]uint64, len(bk))
	for i, k := range ak {
		ah[i] = w.a.nodes[k].hash
	}
	for i, k := range bk {
		bh[i] = w.b.nodes[k].hash
	}
	unordered := w.opts.Unordered != nil && w.opts.Unordered(string(w.key))
	if sameMultiset(ah, bh) {
		if !unordered {
			w.add(Order, x, y)
		}
		return
	}
	for i, k := range ak {
		ah[i] = identity(w.a, k)
	}
	for i, k := range bk {
		bh[i] = identity(w.b, k)
	}
	pl, kl := len(w.path), len(w.key)
	elem := func(i int) {
		w.path = append(strconv.AppendInt(append(w.path[:pl], '['), int64(i), 10), ']')
		w.key = append(w.key[:kl], "[*]"...)
	}
	defer func() { w.path, w.key = w.path[:pl], w.key[:kl] }()
	if unordered || sameMultiset(ah, bh) {
		pairs := multisetMatch(ah, bh)
		if !unordered && !slices.IsSortedFunc(pairs, func(p, q pair) int { return p.b - q.b }) {
			w.add(Order, x, y) // the same elements, each with its own noise, reordered
		}
		matchedA, matchedB := make([]bool, len(ak)), make([]bool, len(bk))
		for _, p := range pairs {
			matchedA[p.a], matchedB[p.b] = true, true
			elem(p.a)
			w.walk(ak[p.a], bk[p.b])
		}
		var restB []int
		for j := range bk {
			if !matchedB[j] {
				restB = append(restB, j)
			}
		}
		for i := range ak {
			if matchedA[i] {
				continue
			}
			elem(i)
			if len(restB) > 0 {
				w.walk(ak[i], bk[restB[0]])
				restB = restB[1:]
			} else {
				w.add(Missing, &w.a.nodes[ak[i]], nil)
			}
		}
		for _, j := range restB {
			elem(len(ak))
			w.add(Extra, nil, &w.b.nodes[bk[j]])
		}
		return
	}
	// Walk the matched pairs and the gaps between them: in a gap,
	// elements facing each other are compared, the rest are missing or
	// extra (an extra element is placed where it would be in the reference).
	ai, bi := 0, 0
	for _, p := range append(lcs(ah, bh), pair{len(ak), len(bk)}) {
		for ; ai < p.a; ai++ {
			elem(ai)
			if bi < p.b {
				w.walk(ak[ai], bk[bi])
				bi++
			} else {
				w.add(Missing, &w.a.nodes[ak[ai]], nil)
			}
		}
		for ; bi < p.b; bi++ {
			elem(p.a)
			w.add(Extra, nil, &w.b.nodes[bk[bi]])
		}
		if p.a < len(ak) {
			elem(p.a)
			w.walk(ak[p.a], bk[p.b])
		}
		ai, bi = p.a+1, p.b+1
	}
}

// identity hashes an array element for alignment: an object by its
// members less those whose value has a volatile shape, its arrays as
// multisets (a set of tags written in map order is the same element).
func identity(d *jdoc, k int32) uint64 {
	n := &d.nodes[k]
	if n.kind != '{' {
		return n.hash
	}
	var h uint64
	for _, c := range d.kids[n.first : n.first+n.n] {
		m := &d.nodes[c]
		// Volatile shapes take 10 characters or more (a date, an epoch).
		if (m.kind == '"' || m.kind == '0') && m.raw.end-m.raw.start >= 10 && Volatile(jsonShape(d, m)) {
			continue
		}
		v := m.hash
		if m.kind == '[' {
			v = multisetHash(d, d.kids[m.first:m.first+m.n])
		}
		h += mix(hashString(d.of(m.key)) ^ mix(v+1))
	}
	return mix(h ^ 0x69)
}

// multisetHash hashes elements whatever their order.
func multisetHash(d *jdoc, kids []int32) uint64 {
	var sum, x uint64
	for _, k := range kids {
		sum += mix(d.nodes[k].hash)
		x ^= mix(d.nodes[k].hash + 7)
	}
	return mix(sum ^ mix(x) ^ 0x5b)
}

func sameMultiset(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	var sa, sb, xa, xb uint64
	for i := range a {
		sa, sb = sa+mix(a[i]), sb+mix(b[i])
		xa, xb = xa^mix(a[i]+7), xb^mix(b[i]+7)
	}
	return sa == sb && xa == xb
}

func multisetMatch(a, b []uint64) []pair {
	free := map[uint64][]int{}
	for j, h := range b {
		free[h] = append(free[h], j)
	}
	var out []pair
	for i, h := range a {
		if js := free[h]; len(js) > 0 {
			out = append(out, pair{i, js[0]})
			free[h] = js[1:]
		}
	}
	return out
}
