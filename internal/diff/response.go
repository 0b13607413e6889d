package diff

import (
	"net/http"
	"strings"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// FromResponse is production's answer, as mirrored, as a Message: its
// body still chunked when it was sent so (Decode undoes it).
func FromResponse(resp *httpstream.Response) Message {
	te, _ := resp.Get("Transfer-Encoding")
	return Message{Status: resp.Status, Header: Header(&resp.Message), Body: resp.Body(), Truncated: resp.BodyTruncated,
		Chunked: finalChunked(string(te))}
}

// Header is a captured message's header lines as an http.Header.
func Header(m *httpstream.Message) http.Header {
	h := http.Header{}
	for i := range m.Lines {
		h.Add(string(m.Name(i)), string(m.Value(i)))
	}
	return h
}

// finalChunked reports whether chunked is the last transfer coding.
func finalChunked(te string) bool {
	if i := strings.LastIndexByte(te, ','); i >= 0 {
		te = te[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(te), "chunked")
}
