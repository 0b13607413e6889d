package writes

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Document renders what one request wrote as a JSON document for the
// comparison: operation, then schema, then table, then the rows in the
// order they were written, each row its columns by name:
//
//	{"insert": {"public": {"orders": [{"id": 1001, "note": null, "total": 14.50}]}},
//	 "update": {...the rows after...}, "before": {...their key (or whole row) before...},
//	 "delete": {...the key (or whole row) of the rows deleted...}}
//
// so that a difference is named by where it is (write.insert.public.orders[*].total),
// an id's table is the key's parent (correlation's pairs apply to it, as
// in an answer), numbers and booleans are compared as such, and the
// answer's diff machinery (arrays aligned by identity, learned noise for
// sequences, now() and UUIDs) applies unchanged. nil when nothing was written.
func Document(changes []Change) []byte {
	if len(changes) == 0 {
		return nil
	}
	type rows = map[string]map[string][]map[string]*string // schema, table, rows
	doc := map[string]rows{}
	types := map[string]map[string]uint32{} // schema.table: column types
	add := func(op, table string, row map[string]*string) {
		if row == nil {
			return
		}
		schema, name, ok := strings.Cut(table, ".")
		if !ok {
			schema, name = "", table
		}
		if doc[op] == nil {
			doc[op] = rows{}
		}
		if doc[op][schema] == nil {
			doc[op][schema] = map[string][]map[string]*string{}
		}
		doc[op][schema][name] = append(doc[op][schema][name], row)
	}
	for _, c := range changes {
		if types[c.Table] == nil {
			types[c.Table] = c.Types
		}
		switch c.Op {
		case "insert":
			add("insert", c.Table, c.New)
		case "update":
			add("update", c.Table, c.New)
			add("before", c.Table, c.Old)
		case "delete":
			add("delete", c.Table, c.Old)
		}
	}
	var b []byte
	b = append(b, '{')
	for i, op := range sortedKeys(doc, opOrder) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, op)
		b = append(b, ":{"...)
		for j, schema := range sortedKeys(doc[op], strings.Compare) {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, schema)
			b = append(b, ":{"...)
			for k, table := range sortedKeys(doc[op][schema], strings.Compare) {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendString(b, table)
				b = append(b, ":["...)
				ty := types[schema+"."+table]
				if schema == "" {
					ty = types[table]
				}
				for r, row := range doc[op][schema][table] {
					if r > 0 {
						b = append(b, ',')
					}
					b = appendRow(b, row, ty)
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// opOrder puts the operations in the order a reader expects.
func opOrder(a, b string) int {
	rank := func(op string) int { return slices.Index([]string{"insert", "update", "before", "delete"}, op) }
	return cmp.Compare(rank(a), rank(b))
}

func sortedKeys[V any](m map[string]V, by func(a, b string) int) []string {
	return slices.SortedFunc(maps.Keys(m), by)
}

func appendRow(b []byte, row map[string]*string, types map[string]uint32) []byte {
	b = append(b, '{')
	for i, col := range sortedKeys(row, strings.Compare) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, col)
		b = append(b, ':')
		b = appendValue(b, row[col], types[col])
	}
	return append(b, '}')
}

// PostgreSQL's type OIDs (pg_type.dat) whose text is compared as a JSON
// number, a boolean or a JSON document.
const (
	oidBool    = 16
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidOID     = 26
	oidJSON    = 114
	oidFloat4  = 700
	oidFloat8  = 701
	oidNumeric = 1700
	oidJSONB   = 3802
)

func appendValue(b []byte, v *string, oid uint32) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	s := *v
	switch oid {
	case oidBool:
		switch s {
		case "t":
			return append(b, "true"...)
		case "f":
			return append(b, "false"...)
		}
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
		if _, err := strconv.ParseFloat(s, 64); err == nil && json.Valid([]byte(s)) { // not NaN, Infinity
			return append(b, s...)
		}
	case oidJSON, oidJSONB:
		if json.Valid([]byte(s)) {
			return append(b, s...)
		}
	}
	return appendString(b, s)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
