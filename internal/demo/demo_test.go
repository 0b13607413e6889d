package demo

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestDemo runs the whole pipeline in process: real sockets, VXLAN over
// loopback, real HTTP clients, and checks byte-exact delivery.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	sum, err := Run(ctx, &out, Options{Connections: 6, RequestsPerConn: 15})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.ClientRequests != 6*15+3 {
		t.Fatalf("demo failed: %+v\n%s", sum, out.String())
	}
}
