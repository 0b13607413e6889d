package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
	"github.com/shadowtap/shadowtap/internal/testkit/elbfake"
)

// TestTargetGroupHandlers: where each registered target's admin server
// is: an instance at its private address, an IP target at its address
// (IPv6 bracketed), both at -admin-port whatever port they are
// registered with; an instance registered on two ports is one handler;
// a Lambda target and an instance EC2 does not know have no address.
func TestTargetGroupHandlers(t *testing.T) {
	ec2 := (&ec2fake.Server{PageSize: 1, Instances: []ec2fake.Instance{
		{ID: "i-1", State: "running", IP: "10.0.9.1"}, {ID: "i-2", State: "running", IP: "10.0.10.1"}}}).Client(t)
	lb := (&elbfake.Server{TargetGroups: []elbfake.TargetGroup{{ARN: "tg", Targets: []elbfake.Target{
		{ID: "i-1", State: "healthy"}, {ID: "i-1", State: "healthy", Port: 4790}, {ID: "i-2", State: "initial"},
		{ID: "10.0.11.7", State: "healthy"}, {ID: "fd00::7", State: "healthy"},
		{ID: "arn:aws:lambda:us-east-1:123456789012:function:f", State: "unavailable"}, {ID: "i-9", State: "unused"}}}}}).Client(t)
	got, err := targetGroupHandlers(context.Background(), lb, ec2, "tg", 4790)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, h := range got {
		lines = append(lines, fmt.Sprintf("%s %s %v", h.Label, h.URL, h.err))
	}
	want := []string{
		"i-1 10.0.9.1:4790 (healthy) http://10.0.9.1:4790/api/state <nil>",
		"i-2 10.0.10.1:4790 (initial) http://10.0.10.1:4790/api/state <nil>",
		"10.0.11.7:4790 (healthy) http://10.0.11.7:4790/api/state <nil>",
		"[fd00::7]:4790 (healthy) http://[fd00::7]:4790/api/state <nil>",
		"arn:aws:lambda:us-east-1:123456789012:function:f (unavailable)  neither an instance nor an IP target",
		"i-9 (unused)  instance not found or without a private address (terminated?)",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if _, err := targetGroupHandlers(context.Background(), lb, ec2, "tg-none", 4790); err == nil || !strings.Contains(err.Error(), "tg-none") {
		t.Errorf("unknown group: %v", err)
	}

	for in, want := range map[string]string{
		"http://h1:4790":           "http://h1:4790/api/state",
		"h1:4790":                  "http://h1:4790/api/state",
		"https://h1:4790/":         "https://h1:4790/api/state",
		"http://h1:4790/api/state": "http://h1:4790/api/state",
		"http://lb/shadowtap/h1":   "http://lb/shadowtap/h1/api/state",
		"ftp://h1":                 "",
		"http://":                  "",
	} {
		if got, err := StateURL(in); got != want || (err != nil) != (want == "") {
			t.Errorf("StateURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
