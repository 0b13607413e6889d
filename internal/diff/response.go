package diff

import (
	"net/http"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// FromResponse is production's answer, as mirrored, as a Message: its
// body still chunked when it was sent so (Decode undoes it).
func FromResponse(resp *httpstream.Response) Message {
	return Message{Status: resp.Status, Header: Header(&resp.Message), Body: resp.Body(), Truncated: resp.BodyTruncated,
		Chunked: resp.Chunked}
}

// Header is a captured message's header lines as an http.Header.
func Header(m *httpstream.Message) http.Header {
	h := http.Header{}
	for i := range m.Lines {
		h.Add(string(m.Name(i)), string(m.Value(i)))
	}
	return h
}
