package goreplay

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"reflect"
	"testing"
)

func readAll(t *testing.T, r io.Reader) []Payload {
	t.Helper()
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var out []Payload
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
}

// TestHandWritten reads a file in GoReplay's documented format, written by
// hand: a request, its original response, its replayed response, and a
// request in the older header without latency.
func TestHandWritten(t *testing.T) {
	file := "1 8e6fb6b2d6b14c1d4e0f6e7d 1439818000000000000 0\n" +
		"GET /search?q=shoes HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n\r\n" +
		"\n🐵🙈🙉\n" +
		"2 8e6fb6b2d6b14c1d4e0f6e7d 1439818000012000000 12000000\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
		"\n🐵🙈🙉\n" +
		"3 8e6fb6b2d6b14c1d4e0f6e7d 1439818000020000000 9000000\n" +
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n" +
		"\n🐵🙈🙉\n" +
		"1 f45590522cd1838b4a0d5c5aab80b77929dea3b3 1439818000030000000\n" +
		"POST /cart HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 7\r\n\r\nitem=42" +
		"\n🐵🙈🙉\n"
	got := readAll(t, bytes.NewBufferString(file))
	want := []Payload{
		{Request, "8e6fb6b2d6b14c1d4e0f6e7d", 1439818000000000000, 0, []byte("GET /search?q=shoes HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n\r\n")},
		{Response, "8e6fb6b2d6b14c1d4e0f6e7d", 1439818000012000000, 12000000, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")},
		{ReplayedResponse, "8e6fb6b2d6b14c1d4e0f6e7d", 1439818000020000000, 9000000, []byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")},
		{Request, "f45590522cd1838b4a0d5c5aab80b77929dea3b3", 1439818000030000000, -1, []byte("POST /cart HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 7\r\n\r\nitem=42")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if !LooksLike([]byte(file)) || LooksLike([]byte("GET / HTTP/1.1\r\n")) {
		t.Error("LooksLike")
	}
}

func TestWriteReadBack(t *testing.T) {
	in := []Payload{
		{Request, ID(7, 0), 100, 0, []byte("GET / HTTP/1.1\r\n\r\n")},
		{Response, ID(7, 0), 150, 40, []byte("HTTP/1.1 204 No Content\r\n\r\n")},
		{ReplayedResponse, ID(7, 0), 160, 30, []byte("HTTP/1.1 204 No Content\r\n\r\n")},
		{Request, ID(7, 1), 200, -1, []byte("POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n\x00\n\xff")},
	}
	var plain, zipped bytes.Buffer
	w := NewWriter(&plain)
	for _, p := range in {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain.Bytes())
	zw.Close()
	for name, r := range map[string]io.Reader{"plain": &plain, "gzip": &zipped} {
		if got := readAll(t, r); !reflect.DeepEqual(got, in) {
			t.Errorf("%s: got %+v", name, got)
		}
	}
	if len(ID(7, 1)) != 24 {
		t.Errorf("id %q", ID(7, 1))
	}
	rd, _ := NewReader(bytes.NewBufferString("x y\nGET / HTTP/1.1\r\n\r\n" + Separator))
	if _, err := rd.Next(); !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v", err)
	}
}
