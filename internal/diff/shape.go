package diff

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Shape classifies a value by its form, not its content: "uuid", "ulid",
// "hex32", "token", "time:9999-99-99T99:99:99Z" (the layout, digits as 9),
// "time:http", "int", "float", "epoch-s", "epoch-ms", "bool", the format
// of a short code with digits ("fmt:AAA-99999"), or "str" for anything
// without a recognised form. Two values with the same volatile
// shape (see Volatile) are alike for noise: a new id for a new id.
func Shape(s string) string {
	n := len(s)
	switch {
	case n == 36 && isUUID(s):
		return "uuid"
	case n == 26 && isULID(s):
		return "ulid"
	case n >= 10 && isDateStart(s):
		return "time:" + digitLayout(s)
	case n == 29 && strings.HasSuffix(s, " GMT"):
		if _, err := http.ParseTime(s); err == nil {
			return "time:http"
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

// Coarse is a shape's class for values that vary without a format of
// their own: every string without a recognised form is "str".
func Coarse(shape string) string {
	if strings.HasPrefix(shape, "fmt:") {
		return "str"
	}
	return shape
}

// NumberShape classifies a JSON number.
func NumberShape(raw []byte) string {
	s := string(raw)
	if strings.ContainsAny(s, ".eE") {
		return "float"
	}
	v, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		return "int"
	case v >= 946684800 && v < 4102444800: // 2000 to 2100 in seconds
		return "epoch-s"
	case v >= 946684800_000 && v < 4102444800_000:
		return "epoch-ms"
	}
	return "int"
}

// Volatile reports whether a shape is one that values generated per
// response take: ids, tokens and times.
func Volatile(shape string) bool {
	switch {
	case shape == "uuid", shape == "ulid", shape == "token", shape == "epoch-s", shape == "epoch-ms",
		strings.HasPrefix(shape, "hex"), strings.HasPrefix(shape, "time:"):
		return true
	}
	return false
}

// TimeOf reads a value of a time shape.
func TimeOf(value string, shape string) (time.Time, bool) {
	switch {
	case shape == "epoch-s" || shape == "epoch-ms":
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		if shape == "epoch-ms" {
			return time.UnixMilli(v), true
		}
		return time.Unix(v, 0), true
	case shape == "time:http":
		t, err := http.ParseTime(value)
		return t, err == nil
	case strings.HasPrefix(shape, "time:"):
		for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999",
			"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z0700", "2006-01-02 15:04:05.999999999"} {
			if t, err := time.Parse(l, value); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
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
		isDigit(s[6]) && s[7] == '-' && isDigit(s[8]) && isDigit(s[9]) && (len(s) == 10 || s[10] == 'T' || s[10] == ' ')
}

// digitLayout is s with every digit as 9: the layout of a time value.
func digitLayout(s string) string {
	b := []byte(s)
	for i, c := range b {
		if isDigit(c) {
			b[i] = '9'
		}
	}
	return string(b)
}

// Tokens of a text line that vary by themselves (times, uuids, long hex,
// opaque tokens) and numbers. The line's template (its key across
// responses) has each replaced by a placeholder; its shape keeps numbers
// literal and puts the volatile tokens' shapes in their place.
var lineTokenRe = regexp.MustCompile(`(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)|` +
	`([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})|` +
	`\b([0-9a-fA-F]{16,})\b|\b([0-9A-Za-z_-]{20,})\b|(\d+(?:\.\d+)?)`)

const maxTemplate = 80

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
			sh.WriteString("{time:" + digitLayout(string(tok)) + "}")
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
