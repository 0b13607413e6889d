package diff

import (
	"bytes"
	"encoding/csv"
	"hash/maphash"
	"strconv"
	"strings"
)

// maxLineDiffs bounds the differences reported for one text body; the
// rest are counted in one "body(text)" difference.
const maxLineDiffs = 50

func splitLines(b []byte) [][]byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	ls := bytes.Split(b, []byte("\n"))
	for i, l := range ls {
		ls[i] = bytes.TrimSuffix(l, []byte("\r"))
	}
	return ls
}

func hashLines(ls [][]byte) []uint64 {
	h := make([]uint64, len(ls))
	for i, l := range ls {
		h[i] = maphash.Bytes(seed, l)
	}
	return h
}

func lineKey(l []byte) string {
	k, _, _ := LineTemplate(l)
	return "line " + strconv.Quote(k)
}

// compareText diffs the bodies line by line. A changed line is located
// in the reference (line:N) and in the candidate (cand_field line:M) and
// keyed by its template, so that a line that varies on every response
// (a time, a nonce) is one key and a change elsewhere another.
func compareText(out []Difference, a, b []byte) []Difference {
	al, bl := splitLines(a), splitLines(b)
	pairs := lcs(hashLines(al), hashLines(bl))
	n := 0
	loc := func(i int) string { return "line:" + strconv.Itoa(i+1) }
	ai, bi := 0, 0
	for _, p := range append(pairs, pair{len(al), len(bl)}) {
		for ai < p.a || bi < p.b {
			if n >= maxLineDiffs {
				// Past the bound only count: templates cost a regexp each.
				n += max(p.a-ai, p.b-bi)
				ai, bi = p.a, p.b
				break
			}
			n++
			switch {
			case ai < p.a && bi < p.b:
				_, rs, _ := LineTemplate(al[ai])
				_, cs, _ := LineTemplate(bl[bi])
				d := changed(loc(ai), lineKey(al[ai]), string(al[ai]), string(bl[bi]), rs, cs)
				d.CandField = loc(bi)
				out = append(out, d)
				ai, bi = ai+1, bi+1
			case ai < p.a:
				out = append(out, Difference{Field: loc(ai), Key: lineKey(al[ai]), Kind: Missing, Ref: renderBytes(al[ai])})
				ai++
			default:
				out = append(out, Difference{Field: loc(ai), CandField: loc(bi), Key: lineKey(bl[bi]), Kind: Extra, Cand: renderBytes(bl[bi])})
				bi++
			}
		}
		ai, bi = p.a+1, p.b+1
	}
	more := n - maxLineDiffs
	if more > 0 {
		out = append(out, Difference{Field: "body(text)", Key: "body(text)", Kind: Changed,
			Cand: strconv.Itoa(more) + " more lines differ"})
	}
	return out
}

// parseCSV reads a CSV body with a header row; nil when it does not parse.
func parseCSV(b []byte) [][]string {
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = 0 // every row as wide as the header
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil
	}
	return rows
}

// compareCSV compares rows (aligned by content, as lines are) and, in
// rows at the same place, cells by column name: row:N col:NAME, N counting
// the reference's data rows from 1.
func compareCSV(out []Difference, a, b [][]string) []Difference {
	ha, hb := a[0], b[0]
	bCol := map[string]int{}
	for j, name := range hb {
		bCol[name] = j
	}
	type col struct {
		name string
		ai   int
		bi   int
	}
	var common []col
	aCol := map[string]bool{}
	for i, name := range ha {
		aCol[name] = true
		if j, ok := bCol[name]; ok {
			common = append(common, col{name, i, j})
		} else {
			out = append(out, Difference{Field: "col:" + name, Key: "col:" + name, Kind: Missing, Ref: name})
		}
	}
	for _, name := range hb {
		if !aCol[name] {
			out = append(out, Difference{Field: "col:" + name, Key: "col:" + name, Kind: Extra, Cand: name})
		}
	}
	rowHash := func(r []string, b bool) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		for _, c := range common {
			i := c.ai
			if b {
				i = c.bi
			}
			h.WriteString(r[i])
			h.WriteByte(0)
		}
		return h.Sum64()
	}
	ar, br := a[1:], b[1:]
	ah, bh := make([]uint64, len(ar)), make([]uint64, len(br))
	for i, r := range ar {
		ah[i] = rowHash(r, false)
	}
	for i, r := range br {
		bh[i] = rowHash(r, true)
	}
	row := func(i int) string { return "row:" + strconv.Itoa(i+1) }
	n := 0
	ai, bi := 0, 0
	for _, p := range append(lcs(ah, bh), pair{len(ar), len(br)}) {
		for (ai < p.a || bi < p.b) && n < maxLineDiffs {
			switch {
			case ai < p.a && bi < p.b:
				for _, c := range common {
					x, y := ar[ai][c.ai], br[bi][c.bi]
					if x != y && !SameInstant(x, y) {
						d := changed(row(ai)+" col:"+c.name, "col:"+c.name, x, y, Shape(x), Shape(y))
						d.CandField = row(bi) + " col:" + c.name
						out = append(out, d)
						n++
					}
				}
				ai, bi = ai+1, bi+1
			case ai < p.a:
				out = append(out, Difference{Field: row(ai), Key: "row", Kind: Missing, Ref: render(strings.Join(ar[ai], ","))})
				ai, n = ai+1, n+1
			default:
				out = append(out, Difference{Field: row(ai), CandField: row(bi), Key: "row", Kind: Extra, Cand: render(strings.Join(br[bi], ","))})
				bi, n = bi+1, n+1
			}
		}
		ai, bi = p.a+1, p.b+1
	}
	return out
}

// Leaf is one scalar value of a response, for learning how production's
// values vary: a JSON scalar, a CSV cell, a text line with a volatile
// token, a header.
type Leaf struct {
	Key   string
	Hash  uint64 // of the value
	Shape string
	Value []byte // a view: valid during the call only
}

// maxLeaves bounds the work of learning from one response.
const maxLeaves = 512

// Leaves calls fn for the values of p worth learning from.
func (p *Parsed) Leaves(opts Options, fn func(Leaf)) {
	n := 0
	for k, vs := range p.Msg.Header {
		k = "header." + k
		if containsFold(opts.IgnoreHeaders, k[len("header."):]) {
			continue
		}
		v := strings.Join(vs, ", ")
		fn(Leaf{Key: k, Hash: maphash.String(seed, v), Shape: Shape(v), Value: []byte(v)})
	}
	switch {
	case p.json != nil:
		var path []byte
		path = append(path, p.rootKey()...)
		p.jsonLeaves(0, path, &n, fn)
	case p.csv != nil:
		for _, r := range p.csv[1:min(len(p.csv), 50)] {
			for j, c := range r {
				fn(Leaf{Key: "col:" + p.csv[0][j], Hash: maphash.String(seed, c), Shape: Shape(c), Value: []byte(c)})
			}
		}
	case p.Media == "text" || p.Media == "json" || p.Media == "csv":
		for _, l := range splitLines(p.Body) {
			if n >= maxLeaves {
				return
			}
			if !hasDigit(l) {
				continue
			}
			k, sh, vol := LineTemplate(l)
			if vol {
				n++
				fn(Leaf{Key: "line " + strconv.Quote(k), Hash: maphash.Bytes(seed, l), Shape: sh, Value: l})
			}
		}
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func (p *Parsed) jsonLeaves(i int32, key []byte, n *int, fn func(Leaf)) {
	if *n >= maxLeaves {
		return
	}
	x := &p.json.nodes[i]
	kids := p.json.kids[x.first : x.first+x.n]
	switch x.kind {
	case '{':
		for _, c := range kids {
			p.jsonLeaves(c, appendMember(key, p.json.of(p.json.nodes[c].key)), n, fn)
		}
	case '[':
		key = append(key, "[*]"...)
		for _, c := range kids[:min(len(kids), 4)] { // a few elements tell how the field varies
			p.jsonLeaves(c, key, n, fn)
		}
	default:
		*n++
		v := p.json.of(x.raw)
		if x.kind == '"' {
			v = []byte(unquote(v))
		}
		fn(Leaf{Key: string(key), Hash: x.hash, Shape: jsonShape(p.json, x), Value: v})
	}
}

// Arrays calls fn for the JSON arrays of p with two elements or more
// (the first few of each list, as Leaves): the array's key, the hash of
// its elements as a multiset and the hash of their order, so that the
// caller learns which arrays the reference writes in varying order
// (sets emitted in map order, at any depth).
func (p *Parsed) Arrays(fn func(key string, set, order uint64)) {
	if p.json == nil {
		return
	}
	n := 0
	p.jsonArrays(0, append([]byte(nil), p.rootKey()...), &n, fn)
}

func (p *Parsed) jsonArrays(i int32, key []byte, n *int, fn func(string, uint64, uint64)) {
	if *n >= maxLeaves {
		return
	}
	x := &p.json.nodes[i]
	kids := p.json.kids[x.first : x.first+x.n]
	switch x.kind {
	case '{':
		for _, c := range kids {
			p.jsonArrays(c, appendMember(key, p.json.of(p.json.nodes[c].key)), n, fn)
		}
	case '[':
		*n++
		if len(kids) >= 2 {
			fn(string(key), multisetHash(p.json, kids), x.hash)
		}
		key = append(key, "[*]"...)
		for _, c := range kids[:min(len(kids), 4)] {
			p.jsonArrays(c, key, n, fn)
		}
	}
}
