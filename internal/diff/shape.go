package diff

import (
	"bytes"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Shape classifies a value by its form, not its content: "uuid", "ulid",
// "hex32", "token", "time" (an instant, in any of the forms encoders
// write: RFC 3339 with any fraction and any offset, with a space or
// without a zone, RFC 1123 and the other HTTP dates), "date", "int",
// "float", "bool", the format of a short code with digits
// ("fmt:AAA-99999"), or "str" for anything without a recognised form.
// Two values with the same volatile shape (see Volatile) are alike for
// noise: a new id for a new id, a time for a time however it is written
// (Go's RFC3339Nano drops trailing zeros, so one field's text changes
// length from answer to answer).
func Shape(s string) string {
	n := len(s)
	switch {
	case n == 36 && isUUID(s):
		return "uuid"
	case n == 26 && isULID(s):
		return "ulid"
	case n == 10 && isDateStart(s):
		if _, err := time.Parse(time.DateOnly, s); err == nil {
			return "date"
		}
	case n > 10 && isDateStart(s):
		if _, _, ok := parseISO(s); ok {
			return "time"
		}
	case n >= 24 && n <= 40 && isWeekdayStart(s):
		if _, ok := parseHTTPDate(s); ok {
			return "time"
		}
	}
	if n >= 16 && allOf(s, isHex) {
		return "hex" + strconv.Itoa(n)
	}
	if n >= 16 && allOf(s, isTokenChar) && strings.ContainsAny(s, "0123456789") &&
		strings.IndexFunc(s, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' }) >= 0 {
		return "token"
	}
	if n >= 4 && n <= 32 && strings.ContainsAny(s, "0123456789") {
		// A short code (AB12CD, CPN-7KQ2X): its format, character by
		// character, so that only a code of the same format is alike.
		b := make([]byte, 0, 4+n)
		b = append(b, "fmt:"...)
		for i := 0; i < n; i++ {
			switch c := s[i]; {
			case isDigit(c):
				b = append(b, '9')
			case c >= 'A' && c <= 'Z':
				b = append(b, 'A')
			case c >= 'a' && c <= 'z':
				b = append(b, 'a')
			default:
				b = append(b, c)
			}
		}
		return string(b)
	}
	return "str"
}

// Family is a shape with each run of digits of a code as one, "9+": a
// number inside a code is one form however many digits it has, so a
// counter in a path (/api/orders/9, /api/orders/10) keeps its form from
// answer to answer. Other shapes are their own family.
func Family(shape string) string {
	if !strings.HasPrefix(shape, "fmt:") || !strings.Contains(shape, "9") {
		return shape
	}
	b := make([]byte, 0, len(shape)+2)
	for i := 0; i < len(shape); i++ {
		if shape[i] == '9' {
			if i > 0 && shape[i-1] == '9' {
				continue
			}
			b = append(b, "9+"...)
			continue
		}
		b = append(b, shape[i])
	}
	return string(b)
}

// Alike reports whether two shapes are of one family (see Family).
func Alike(a, b string) bool { return a == b || Family(a) == Family(b) }

// Coarse is a shape's class for values that vary without a format of
// their own: every string without a recognised form is "str".
func Coarse(shape string) string {
	if strings.HasPrefix(shape, "fmt:") {
		return "str"
	}
	return shape
}

// NumberShape classifies a JSON number: an integer or a float in the
// range of epoch seconds, or an integer of epoch milli-, micro- or
// nanoseconds, between 2000 and 2100, is a "time".
func NumberShape(raw []byte) string {
	if _, ok := epochOf(raw); ok {
		return "time"
	}
	if bytes.ContainsAny(raw, ".eE") {
		return "float"
	}
	return "int"
}

const (
	epochFrom = 946684800  // 2000-01-01 in seconds
	epochTo   = 4102444800 // 2100-01-01
)

// epochOf reads a number as an epoch time, its unit told by its
// magnitude: the ranges of seconds, ms, µs and ns from 2000 to 2100 do
// not overlap.
func epochOf(raw []byte) (time.Time, bool) {
	if len(raw) < 9 || len(raw) > 24 {
		return time.Time{}, false
	}
	if bytes.ContainsAny(raw, ".eE") {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || f < epochFrom || f >= epochTo || bytes.ContainsAny(raw, "eE") {
			return time.Time{}, false
		}
		sec := math.Floor(f)
		return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), true
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	for _, unit := range []int64{1, 1e3, 1e6, 1e9} {
		if v >= epochFrom*unit && v < epochTo*unit {
			return time.Unix(0, 0).Add(time.Duration(v) * (time.Second / time.Duration(unit))).UTC(), true
		}
	}
	return time.Time{}, false
}

// Volatile reports whether a shape is one that values generated per
// response take: ids, tokens and times.
func Volatile(shape string) bool {
	switch {
	case shape == "uuid", shape == "ulid", shape == "token", shape == "time", shape == "date",
		strings.HasPrefix(shape, "hex"):
		return true
	}
	return false
}

// TimeOf reads a value of shape "time" or "date" (a JSON string's value,
// a number, a header's), in UTC.
func TimeOf(value string) (time.Time, bool) {
	switch n := len(value); {
	case n == 0:
	case n == 10 && isDateStart(value):
		t, err := time.Parse(time.DateOnly, value)
		return t, err == nil
	case n > 10 && isDateStart(value):
		t, _, ok := parseISO(value)
		return t, ok
	case isDigit(value[0]):
		return epochOf([]byte(value))
	default:
		return parseHTTPDate(value)
	}
	return time.Time{}, false
}

// SameInstant reports whether two texts are one instant written two
// ways (2026-11-26T13:28:29+01:00 and 2026-11-26T12:28:29.000Z): equal
// for a client that reads them as times. Both must carry a zone, or
// neither: a zone dropped is a change.
func SameInstant(a, b string) bool {
	if len(a) <= 10 || len(b) <= 10 || !isDateStart(a) || !isDateStart(b) {
		return false
	}
	ta, za, ok1 := parseISO(a)
	tb, zb, ok2 := parseISO(b)
	return ok1 && ok2 && za == zb && ta.Equal(tb)
}

// isoLayouts are the forms of RFC 3339 and ISO 8601 that encoders write
// (Go, JavaScript's toISOString, Python's isoformat and str, Java's
// Instant and OffsetDateTime, PHP's DATE_ATOM): time.Parse accepts any
// fraction after the seconds, so one layout covers every fraction length.
var isoLayouts = [...]struct {
	layout string
	zoned  bool
}{
	{"2006-01-02T15:04:05Z07:00", true},
	{"2006-01-02T15:04:05Z0700", true},
	{"2006-01-02T15:04:05Z07", true},
	{"2006-01-02T15:04:05", false},
	{"2006-01-02T15:04:05 -0700", true}, // Ruby's Time#to_s
	{"2006-01-02T15:04:05 MST", true},   // UTC, GMT
	{"2006-01-02T15:04Z07:00", true},
	{"2006-01-02T15:04", false},
}

// parseISO reads an RFC 3339 / ISO 8601 date-time, with 'T', 't' or a
// space between date and time; zoned says whether it carries a zone (a
// time without one is read as UTC).
func parseISO(s string) (t time.Time, zoned bool, ok bool) {
	if len(s) < 16 || !(s[10] == 'T' || s[10] == ' ' || s[10] == 't') {
		return time.Time{}, false, false
	}
	if s[10] != 'T' {
		s = s[:10] + "T" + s[11:]
	}
	if last := s[len(s)-1]; last == 'z' {
		s = s[:len(s)-1] + "Z"
	}
	for _, l := range isoLayouts {
		if t, err := time.Parse(l.layout, s); err == nil {
			return t.UTC(), l.zoned, true
		}
	}
	return time.Time{}, false, false
}

// parseHTTPDate reads the dates of HTTP and e-mail (RFC 1123 with GMT or
// a numeric zone, RFC 850, asctime).
func parseHTTPDate(s string) (time.Time, bool) {
	if t, err := http.ParseTime(s); err == nil {
		return t.UTC(), true
	}
	for _, l := range []string{time.RFC1123Z, time.RFC1123, "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func isWeekdayStart(s string) bool {
	switch s[:3] {
	case "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun":
		return true
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func isTokenChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-' || c == '+' ||
		c == '/' || c == '='
}

func allOf(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !f(s[i]) {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isULID(s string) bool {
	if s[0] > '7' {
		return false
	}
	digits := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
		digits = digits || c <= '9'
	}
	return digits
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isDateStart(s string) bool {
	return isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2]) && isDigit(s[3]) && s[4] == '-' && isDigit(s[5]) &&
		isDigit(s[6]) && s[7] == '-' && isDigit(s[8]) && isDigit(s[9]) && (len(s) == 10 || s[10] == 'T' || s[10] == ' ' || s[10] == 't')
}

// Tokens of a text line that vary by themselves (times, uuids, long hex,
// opaque tokens) and numbers. The line's template (its key across
// responses) has each replaced by a placeholder; its shape keeps numbers
// literal and puts the volatile tokens' shapes in their place.
var lineTokenRe = regexp.MustCompile(`(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?| [+-]\d{4}| UTC| GMT)?|` +
	`(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} (?:GMT|UTC|[+-]\d{4}))|` +
	`([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})|` +
	`\b([0-9a-fA-F]{16,})\b|\b([0-9A-Za-z_-]{20,})\b|(\d+(?:\.\d+)?)`)

const maxTemplate = 80

// LineTime reads the first time written in a line of text.
func LineTime(line []byte) (time.Time, bool) {
	for _, m := range lineTokenRe.FindAllSubmatchIndex(line, -1) {
		tok := line[m[0]:m[1]]
		switch {
		case m[2] >= 0:
			return TimeOf(string(tok))
		case m[10] >= 0 && isEpochToken(tok):
			return epochOf(tok)
		}
	}
	return time.Time{}, false
}

// isEpochToken reports whether a number in a line is an epoch time (10
// digits of seconds or more: not a count).
func isEpochToken(tok []byte) bool {
	_, ok := epochOf(tok)
	return ok && len(tok) >= 10
}

// LineTemplate returns a text line's key (template) and shape, and
// whether it holds a volatile token.
func LineTemplate(line []byte) (key, shape string, volatile bool) {
	if !hasDigit(line) {
		s := string(line)
		return render(s), s, false
	}
	var k, sh strings.Builder
	last := 0
	for _, m := range lineTokenRe.FindAllSubmatchIndex(line, -1) {
		k.Write(line[last:m[0]])
		sh.Write(line[last:m[0]])
		tok := line[m[0]:m[1]]
		switch {
		case m[2] >= 0:
			k.WriteString("{ts}")
			sh.WriteString("{time}") // any rendering of a time: its layout varies (fractions dropped)
			volatile = true
		case m[4] >= 0:
			k.WriteString("{uuid}")
			sh.WriteString("{uuid}")
			volatile = true
		case m[6] >= 0 && hasDigit(tok):
			k.WriteString("{hex}")
			sh.WriteString("{hex" + strconv.Itoa(len(tok)) + "}")
			volatile = true
		case (m[6] >= 0 || m[8] >= 0) && hasDigit(tok):
			k.WriteString("{token}")
			sh.WriteString("{token}")
			volatile = true
		case m[10] >= 0 && isEpochToken(tok):
			k.WriteString("{ts}")
			sh.WriteString("{time}")
			volatile = true
		case m[10] >= 0:
			k.WriteString("{n}")
			sh.Write(tok)
		default:
			k.Write(tok)
			sh.Write(tok)
		}
		last = m[1]
	}
	k.Write(line[last:])
	sh.Write(line[last:])
	return render(k.String()), sh.String(), volatile
}

func hasDigit(b []byte) bool {
	for _, c := range b {
		if isDigit(c) {
			return true
		}
	}
	return false
}
