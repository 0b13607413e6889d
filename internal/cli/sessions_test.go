package cli

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
	"github.com/shadowtap/shadowtap/internal/testkit/elbfake"
)

// TestSessionsCheckCommand runs `sessions check` and `sessions sync` as a
// user would, against the EC2 and Elastic Load Balancing fakes on
// loopback: the exit codes, the text and JSON output, and sync refusing
// what the check fails.
func TestSessionsCheckCommand(t *testing.T) {
	const arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/shadowtap/1"
	f := &ec2fake.Server{PageSize: 10,
		Instances: []ec2fake.Instance{
			{ID: "i-1", ENI: "eni-1", Type: "m5.large", State: "running", AZ: "us-east-1a", IP: "10.0.1.1", Subnet: "subnet-a", Tags: map[string]string{"app": "shop"}},
			{ID: "i-h", ENI: "eni-h", Type: "c7g.large", State: "running", AZ: "us-east-1a", IP: "10.0.9.1", Subnet: "subnet-h", Groups: []string{"sg-h"}}},
		Targets: []ec2fake.Target{{ID: "tmt-1", NLB: arn}},
		Filters: []ec2fake.Filter{{ID: "tmf-1",
			Ingress: []ec2fake.Rule{{Number: 1, Accept: true, Protocol: 6, DstFrom: 80, DstTo: 80}},
			Egress:  []ec2fake.Rule{{Number: 1, Accept: true, Protocol: 6, SrcFrom: 80, SrcTo: 80}}}},
		SecurityGroups: []ec2fake.SecurityGroup{{ID: "sg-h", Ingress: []ec2fake.Permission{{Protocol: "udp", From: 4789, To: 4789, CIDRs: []string{"10.0.0.0/16"}}}}},
		NetworkACLs: []ec2fake.NetworkACL{{ID: "acl-1", Subnets: []string{"subnet-lb", "subnet-h"},
			Entries: []ec2fake.ACLEntry{{Number: 100, Protocol: "-1", CIDR: "0.0.0.0/0", Allow: true}}}},
	}
	lb := &elbfake.Server{
		LoadBalancers: []elbfake.LoadBalancer{{ARN: arn, Name: "shadowtap", Type: "network", CrossZone: true, Zones: map[string]string{"us-east-1a": "subnet-lb"},
			Listeners: []elbfake.Listener{{Protocol: "UDP", Port: 4789, TargetGroup: "tg-1"}}}},
		TargetGroups: []elbfake.TargetGroup{{ARN: "tg-1", Targets: []elbfake.Target{{ID: "i-h", State: "healthy"}}}},
	}
	ec2srv, elbsrv := httptest.NewServer(f), httptest.NewServer(lb)
	defer ec2srv.Close()
	defer elbsrv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	common := []string{"-region", "us-east-1", "-endpoint", ec2srv.URL, "-elb-endpoint", elbsrv.URL, "-target", "tmt-1", "-filter", "tmf-1", "-tag", "app=shop"}
	check := append([]string{"sessions", "check"}, common...)

	// Everything works; the default MTU is a warning, which exits 0.
	out, _ := run(t, check...)
	for _, want := range []string{
		"ok    instance i-1 interface eni-1  instance type: m5.large",
		"ok    target tmt-1 (load balancer shadowtap)  listener: UDP listener on port 4789",
		"warn  mtu  packet length: sources' MTU 9001",
		"0 failures",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}

	// -json, and a failure exits 1.
	f.Mu.Lock()
	f.Instances[0].Type = "t2.micro"
	f.Mu.Unlock()
	var o, e bytes.Buffer
	if code := Main("dev", append(check, "-json"), &o, &e); code != 1 {
		t.Errorf("failing check: exit %d\n%s%s", code, o.String(), e.String())
	}
	var doc struct {
		Findings []struct{ Level, Check, Interface, Fix string }
		Fail     int
	}
	if err := json.Unmarshal(o.Bytes(), &doc); err != nil || doc.Fail != 1 {
		t.Fatalf("json (%v):\n%s", err, o.String())
	}

	// sync refuses the session the check fails, and says why; -force
	// creates it (AWS would then refuse it, here the fake accepts).
	sync := append([]string{"sessions", "sync", "-vni", "77"}, common...)
	o.Reset()
	if code := Main("dev", sync, &o, &e); code != 1 || !strings.Contains(o.String(), "refused  instance i-1 interface eni-1 number 1 - pre-flight") ||
		len(f.CallsOf("CreateTrafficMirrorSession")) != 0 {
		t.Errorf("sync over a failing check: exit %d\n%s", code, o.String())
	}
	out, _ = run(t, append(sync, "-force")...)
	if !strings.Contains(out, "1 created") || len(f.CallsOf("CreateTrafficMirrorSession")) != 1 {
		t.Errorf("forced sync:\n%s", out)
	}

	// The instance type list can be replaced: t2 allowed by a newer list.
	types := filepath.Join(t.TempDir(), "types.yaml")
	os.WriteFile(types, []byte("source: https://example.com\ndate: \"2027-01-01\"\nnitro_unsupported: [c7g]\nxen_supported: [t2]\nxen: [t2]\n"), 0o644)
	out, _ = run(t, append(check, "-instance-types", types)...)
	if !strings.Contains(out, "t2.micro: one of the Xen families that can be mirror sources (AWS's list of 2027-01-01)") {
		t.Errorf("-instance-types:\n%s", out)
	}

	// An API error is reported with AWS's code.
	lb.Mu.Lock()
	lb.Fail = map[string]string{"DescribeListeners": "AccessDenied"}
	lb.Mu.Unlock()
	o.Reset()
	if code := Main("dev", check, &o, &e); code != 1 || !strings.Contains(o.String(), "fail  target tmt-1 (load balancer shadowtap)  listener: describing listeners: AccessDenied") {
		t.Errorf("API error: exit %d\n%s", code, o.String())
	}
	if code := Main("dev", []string{"sessions", "check", "-target", "t", "-filter", "f"}, &o, &e); code != 2 {
		t.Errorf("no selector: exit %d", code)
	}
	if code := Main("dev", []string{"sessions"}, &o, &e); code != 2 || !strings.Contains(e.String(), "sessions check") {
		t.Errorf("usage: exit %d %s", code, e.String())
	}
}
