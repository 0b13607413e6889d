package sessions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/sessions"
	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
	"github.com/shadowtap/shadowtap/internal/testkit/elbfake"
)

func check(t *testing.T, f *ec2fake.Server, lb *elbfake.Server, o sessions.Options) *sessions.Report {
	t.Helper()
	r, err := sessions.Check(context.Background(), f.Client(t), lb.Client(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// want asserts that the report has a finding of this level for the
// subject (prefix) and check whose message contains msg.
func want(t *testing.T, r *sessions.Report, level sessions.Level, subject, check, msg string) sessions.Finding {
	t.Helper()
	for _, f := range r.Findings {
		if strings.HasPrefix(f.Subject, subject) && f.Check == check && strings.Contains(f.Message, msg) {
			if f.Level != level {
				t.Errorf("%s %s: level %s, want %s: %s", subject, check, f.Level, level, f)
			}
			if level != sessions.OK && f.Fix == "" {
				t.Errorf("%s %s: %s without a fix", subject, check, level)
			}
			return f
		}
	}
	var b bytes.Buffer
	r.Write(&b)
	t.Errorf("no %s finding for %s %s containing %q:\n%s", level, subject, check, msg, b.String())
	return sessions.Finding{}
}

func TestCheckWorkingAccount(t *testing.T) {
	f, lb := world(t, web("i-1", "m5.large"))
	lb.PageSize = 1 // the UDP listener is on the second page
	r := check(t, f, lb, opts)
	want(t, r, sessions.OK, "instance i-1 interface eni-1", "instance type", "m5.large")
	want(t, r, sessions.OK, "instance i-1", "sessions", "0 of 3")
	want(t, r, sessions.OK, "instance i-1", "reach", "UDP 4789 from 10.0.1.1 passes")
	want(t, r, sessions.OK, "target tmt-nlb", "listener", "UDP listener on port 4789")
	want(t, r, sessions.OK, "target tmt-nlb", "targets", "2 healthy handlers")
	want(t, r, sessions.OK, "target tmt-nlb", "cross-zone", "is on")
	want(t, r, sessions.OK, "filter tmf-http", "requests", "inbound rule 100 accepts TCP to port 80")
	want(t, r, sessions.OK, "filter tmf-http", "responses", "outbound rule 100 accepts TCP from port 80")
	want(t, r, sessions.OK, "filter tmf-http", "rules", "2 of the 10")
	// The default MTU of 9001 does not fit in the 8500 bytes the NLB keeps.
	m := want(t, r, sessions.Warn, "mtu", "packet length", "longer than 8486 bytes")
	if !strings.Contains(m.Fix, "--set-mss 8446") {
		t.Errorf("MSS clamp: %s", m.Fix)
	}
	if r.Fail != 0 {
		t.Errorf("%d failures in a working account", r.Fail)
	}
	if got := lb.CallsOf("DescribeListeners"); len(got) != 2 || got[1] != "DescribeListeners 1" {
		t.Errorf("listener pages: %q", got)
	}
	// The handler instances were looked up by id for their zones and groups.
	if d := f.CallsOf("DescribeInstances"); len(d) != 2 {
		t.Errorf("instance lookups: %q", d)
	}
	var out bytes.Buffer
	r.Write(&out)
	if !strings.Contains(out.String(), "0 failures (instance types: AWS's list of 2026-11-26, https://docs.aws.amazon.com/") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestCheckInstanceTypes(t *testing.T) {
	types := sessions.DefaultInstanceTypes()
	for _, c := range []struct {
		itype string
		level sessions.Level
	}{
		{"m5.large", sessions.OK}, {"t3.micro", sessions.OK}, {"c5n.18xlarge", sessions.OK}, {"i3en.large", sessions.OK},
		{"m4.large", sessions.OK}, {"x1e.xlarge", sessions.OK}, {"i3.large", sessions.OK}, // Xen families AWS lists
		{"c7g.large", sessions.Fail}, {"m7i-flex.large", sessions.Fail}, {"m6i.xlarge", sessions.Fail}, {"p5.48xlarge", sessions.Fail},
		{"t2.micro", sessions.Fail}, {"m3.medium", sessions.Fail}, // Xen, not listed
		{"m5.metal", sessions.Fail}, {"c5.metal", sessions.Fail},
		{"m8i.large", sessions.Warn}, {"c9g.large", sessions.Warn}, // as new as or newer than the list
	} {
		if l, msg := types.Judge(c.itype); l != c.level {
			t.Errorf("%s: %s (%s), want %s", c.itype, l, msg, c.level)
		}
	}

	// Through the check, each with its own line.
	f, lb := world(t, web("i-1", "m5.large"), web("i-2", "c7g.large"), web("i-3", "m8i.large"))
	r := check(t, f, lb, opts)
	want(t, r, sessions.OK, "instance i-1 ", "instance type", "m5.large")
	want(t, r, sessions.Fail, "instance i-2 ", "instance type", "family c7g cannot be a mirror source (AWS's list of 2026-11-26)")
	want(t, r, sessions.Warn, "instance i-3 ", "instance type", "m8i.large")

	// The list can be replaced from a file when AWS changes it.
	path := filepath.Join(t.TempDir(), "types.yaml")
	os.WriteFile(path, []byte("source: https://example.com/list\ndate: \"2027-01-01\"\nnitro_unsupported: [m5, m8i]\nxen_supported: []\nxen: [t2]\n"), 0o644)
	newer, err := sessions.LoadInstanceTypes(path)
	if err != nil {
		t.Fatal(err)
	}
	o := opts
	o.Types = newer
	r = check(t, f, lb, o)
	want(t, r, sessions.Fail, "instance i-1 ", "instance type", "family m5 cannot be a mirror source (AWS's list of 2027-01-01)")
	want(t, r, sessions.Fail, "instance i-3 ", "instance type", "m8i")
	want(t, r, sessions.OK, "instance i-2 ", "instance type", "c7g")
	// A misspelt key is an error, not an empty list.
	os.WriteFile(path, []byte("date: x\nnitro_unsuported: [m5]\n"), 0o644)
	if _, err := sessions.LoadInstanceTypes(path); err == nil || !strings.Contains(err.Error(), "nitro_unsuported") {
		t.Errorf("misspelt key: %v", err)
	}
}

func TestCheckSessionsAndPrecedence(t *testing.T) {
	f, lb := world(t, web("i-1", "m5.large"), web("i-2", "m5.large"), web("i-3", "m5.large"), web("i-4", "m5.large"))
	f.Sessions = []ec2fake.Session{
		// i-2: three sessions to other tools, AWS's limit.
		{ID: "tms-a", ENI: "eni-2", Target: "tmt-ids", Number: 1}, {ID: "tms-b", ENI: "eni-2", Target: "tmt-ids", Number: 2},
		{ID: "tms-c", ENI: "eni-2", Target: "tmt-ids", Number: 3},
		// i-3: an IDS session at number 1 takes what both filters accept.
		{ID: "tms-ids", ENI: "eni-3", Target: "tmt-ids", Number: 1},
		// i-4: already mirrored to shadowtap, before a packet logger.
		{ID: "tms-ours", ENI: "eni-4", Target: "tmt-nlb", Number: 1}, {ID: "tms-log", ENI: "eni-4", Target: "tmt-log", Number: 5},
	}
	r := check(t, f, lb, opts)
	want(t, r, sessions.OK, "instance i-1 ", "sessions", "0 of 3 sessions used")
	want(t, r, sessions.Fail, "instance i-2 ", "sessions", "3 sessions already (tms-a, tms-b, tms-c)")
	want(t, r, sessions.Warn, "instance i-3 ", "session number", "number 1 is taken by tms-ids; sync would use 2")
	want(t, r, sessions.Warn, "instance i-3 ", "precedence", "tms-ids (number 1, target tmt-ids) comes before shadowtap's (number 2)")
	want(t, r, sessions.OK, "instance i-4 ", "sessions", "already mirrored to the target by tms-ours")
	want(t, r, sessions.Warn, "instance i-4 ", "precedence", "tms-log (number 5, target tmt-log) comes after shadowtap's (number 1)")
	for _, x := range r.Findings {
		if x.Interface == "eni-4" && x.Check == "packet length" {
			t.Errorf("whole packets mirrored, yet: %s", x)
		}
	}
	// Someone set a packet length on shadowtap's session: it cuts requests.
	f.Sessions[4].PacketLength = 200
	r = check(t, f, lb, opts)
	want(t, r, sessions.Warn, "instance i-4 ", "packet length", "tms-ours keeps only 200 bytes")
	// The failure is the interface's own: it blocks i-2 and nothing else.
	if _, blocked := r.Blocker("eni-2"); !blocked {
		t.Error("eni-2 not blocked")
	}
	if f, blocked := r.Blocker("eni-1"); blocked {
		t.Errorf("eni-1 blocked by %s", f)
	}
}

func TestCheckLoadBalancer(t *testing.T) {
	// No UDP 4789 listener (only TCP on 4789): AWS would mirror nothing.
	f, lb := world(t, web("i-1", "m5.large"))
	lb.LoadBalancers[0].Listeners = []elbfake.Listener{{Protocol: "TCP", Port: 4789, TargetGroup: "tg-vxlan"}}
	r := check(t, f, lb, opts)
	want(t, r, sessions.Fail, "target tmt-nlb (load balancer shadowtap)", "listener", "no UDP listener on port 4789")
	if _, blocked := r.Blocker("eni-1"); !blocked {
		t.Error("a target failure does not block the sources")
	}

	// One handler unhealthy: a warning; none healthy: a failure.
	f, lb = world(t, web("i-1", "m5.large"))
	lb.TargetGroups[0].Targets[1].State = "unhealthy"
	r = check(t, f, lb, opts)
	want(t, r, sessions.Warn, "target tmt-nlb", "targets", "1 healthy, not healthy: i-h2 unhealthy")
	lb.TargetGroups[0].Targets[0].State = "initial"
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "target tmt-nlb", "targets", "no healthy handler among 2 targets")

	// Not a network load balancer.
	f, lb = world(t, web("i-1", "m5.large"))
	lb.LoadBalancers[0].Type = "application"
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "target tmt-nlb", "load balancer", "is a application load balancer")
}

func TestCheckZones(t *testing.T) {
	// Cross-zone off: each source needs a node and a healthy handler in its zone.
	c := web("i-3", "m5.large")
	c.AZ = "us-east-1c"
	f, lb := world(t, web("i-1", "m5.large"), web("i-2", "m5.large"), c)
	f.Instances[1].AZ = "us-east-1b"
	lb.LoadBalancers[0].CrossZone = false
	lb.TargetGroups[0].Targets[1].State = "unhealthy" // the handler in us-east-1b
	r := check(t, f, lb, opts)
	want(t, r, sessions.Warn, "target tmt-nlb", "cross-zone", "is off")
	want(t, r, sessions.OK, "instance i-1 ", "zone", "a load balancer node and a healthy handler in us-east-1a")
	want(t, r, sessions.Fail, "instance i-2 ", "zone", "no healthy handler in us-east-1b")
	want(t, r, sessions.Fail, "instance i-3 ", "zone", "no node in us-east-1c")

	// The target group's own setting overrides the load balancer's.
	lb.TargetGroups[0].CrossZone = "true"
	r = check(t, f, lb, opts)
	want(t, r, sessions.OK, "target tmt-nlb", "cross-zone", "is on")
	for _, x := range r.Findings {
		if x.Check == "zone" {
			t.Errorf("zone checked with cross-zone on: %s", x)
		}
	}
}

func TestCheckReach(t *testing.T) {
	// The handlers' group admits only another VPC's range.
	f, lb := world(t, web("i-1", "m5.large"))
	f.SecurityGroups[0].Ingress[1].CIDRs = []string{"10.1.0.0/16"}
	r := check(t, f, lb, opts)
	want(t, r, sessions.Fail, "instance i-1 ", "reach", "the security groups of handler i-h1 (sg-handler) do not let UDP 4789 in from 10.0.1.1")

	// ... or the source's group by reference: allowed.
	f.SecurityGroups[0].Ingress[1].Groups = []string{"sg-web"}
	r = check(t, f, lb, opts)
	want(t, r, sessions.OK, "instance i-1 ", "reach", "passes")

	// The load balancer has a group that admits only TCP: VXLAN stops there.
	f.SecurityGroups = append(f.SecurityGroups, ec2fake.SecurityGroup{ID: "sg-nlb",
		Ingress: []ec2fake.Permission{{Protocol: "tcp", From: 4789, To: 4790, CIDRs: []string{"10.0.0.0/16"}}}})
	lb.LoadBalancers[0].Groups = []string{"sg-nlb"}
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "instance i-1 ", "reach", "the security groups of load balancer shadowtap (sg-nlb)")
	// Fixed; the handlers' group may then admit the load balancer's group.
	f.SecurityGroups[2].Ingress = append(f.SecurityGroups[2].Ingress, ec2fake.Permission{Protocol: "-1", CIDRs: []string{"10.0.1.0/24"}})
	f.SecurityGroups[0].Ingress[1].Groups = []string{"sg-nlb"}
	r = check(t, f, lb, opts)
	want(t, r, sessions.OK, "instance i-1 ", "reach", "passes 4 network ACLs and 3 sets of security groups")

	// A network ACL entry numbered before the allow drops the sources' subnet.
	f, lb = world(t, web("i-1", "m5.large"), web("i-200", "m5.large"))
	f.Instances[1].IP = "10.0.2.200"
	f.NetworkACLs[0].Entries = append(f.NetworkACLs[0].Entries, ec2fake.ACLEntry{Number: 50, Protocol: "17", From: 4000, To: 5000, CIDR: "10.0.1.0/24"})
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "instance i-1 ", "reach", "drops UDP 4789 from 10.0.1.1 (rule 50)")
	want(t, r, sessions.OK, "instance i-200 ", "reach", "passes")
	// With no allow at all, the default rule drops it.
	f.NetworkACLs[0].Entries = f.NetworkACLs[0].Entries[2:]
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "instance i-200 ", "reach", "(the default rule)")
}

func TestCheckFilter(t *testing.T) {
	// Requests only: the comparison would have no production responses.
	f, lb := world(t, web("i-1", "m5.large"))
	f.Filters[0].Egress = nil
	r := check(t, f, lb, opts)
	want(t, r, sessions.Warn, "filter tmf-http", "responses", "no outbound rule accepts TCP from port 80")
	want(t, r, sessions.OK, "filter tmf-http", "requests", "accepts")

	// A reject rule numbered first wins over the accept.
	f.Filters[0].Ingress = append(f.Filters[0].Ingress, ec2fake.Rule{Number: 10, Protocol: 6, DstFrom: 1, DstTo: 1023})
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "filter tmf-http", "requests", "inbound rule 10 rejects TCP to port 80")

	// The service port is another one: nothing is accepted for it.
	f, lb = world(t, web("i-1", "m5.large"))
	o := opts
	o.Port = 8080
	r = check(t, f, lb, o)
	want(t, r, sessions.Fail, "filter tmf-http", "requests", "no inbound rule accepts TCP to port 8080")
	// An all-protocol rule with no port range accepts it.
	f.Filters[0].Ingress = append(f.Filters[0].Ingress, ec2fake.Rule{Number: 200, Accept: true})
	r = check(t, f, lb, o)
	want(t, r, sessions.OK, "filter tmf-http", "requests", "inbound rule 200 accepts TCP to port 8080")

	// More than ten rules: AWS's limit.
	for i := range 10 {
		f.Filters[0].Egress = append(f.Filters[0].Egress, ec2fake.Rule{Number: 300 + i, Accept: true, Protocol: 17})
	}
	r = check(t, f, lb, o)
	want(t, r, sessions.Fail, "filter tmf-http", "rules", "13 rules, more than the 10")
}

func TestCheckMTU(t *testing.T) {
	// Behind the NLB: sources at 8486 fit in 8500 bytes after the VXLAN header.
	f, lb := world(t, web("i-1", "m5.large"))
	o := opts
	o.SourceMTU = 8486
	want(t, check(t, f, lb, o), sessions.OK, "mtu", "packet length", "sources' MTU 8486 fits")
	o.SourceMTU = 8487
	want(t, check(t, f, lb, o), sessions.Warn, "mtu", "packet length", "longer than 8486 bytes")

	// An interface target: its MTU less the 54 bytes mirroring adds.
	o = opts
	o.Target = "tmt-eni"
	r := check(t, f, lb, o)
	want(t, r, sessions.OK, "target tmt-eni", "target", "network interface eni-h9 in us-east-1a")
	m := want(t, r, sessions.Warn, "mtu", "packet length", "sources' MTU 9001: packets longer than 8947 bytes")
	if !strings.Contains(m.Fix, "--set-mss 8907") {
		t.Errorf("MSS clamp: %s", m.Fix)
	}
	want(t, r, sessions.OK, "instance i-1 ", "reach", "passes 1 network ACLs and 1 sets")
	o.SourceMTU = 1500
	want(t, check(t, f, lb, o), sessions.OK, "mtu", "packet length", "sources' MTU 1500 fits")
}

func TestCheckAPIErrors(t *testing.T) {
	// Each API refusal is its check's failure, with AWS's code, and the
	// other checks still run.
	f, lb := world(t, web("i-1", "m5.large"))
	f.Fail = map[string]string{"DescribeSecurityGroups": "UnauthorizedOperation"}
	lb.Fail = map[string]string{"DescribeLoadBalancerAttributes": "AccessDenied"}
	r := check(t, f, lb, opts)
	want(t, r, sessions.Fail, "instance i-1 ", "reach", "could not check: describing security groups: UnauthorizedOperation: You are not authorized")
	want(t, r, sessions.Fail, "target tmt-nlb", "cross-zone", "describing load balancer attributes: AccessDenied: User is not authorized")
	want(t, r, sessions.OK, "filter tmf-http", "requests", "accepts")

	// Without the handlers, only the load balancer's side of the path is
	// known: reach is a warning, not an ok.
	f.Fail = nil
	lb.Fail = map[string]string{"DescribeTargetHealth": "AccessDenied"}
	r = check(t, f, lb, opts)
	want(t, r, sessions.Fail, "target tmt-nlb", "targets", "describing target health: AccessDenied")
	want(t, r, sessions.Warn, "instance i-1 ", "reach", "the handlers behind the load balancer could not be read")

	// Unknown ids are AWS's NotFound errors.
	o := opts
	o.Target, o.Filter = "tmt-nope", "tmf-nope"
	r = check(t, f, lb, o)
	want(t, r, sessions.Fail, "target tmt-nope", "target", "InvalidTrafficMirrorTargetId.NotFound")
	want(t, r, sessions.Fail, "filter tmf-nope", "filter", "InvalidTrafficMirrorFilterId.NotFound")

	// Bad options are errors before any call.
	o = opts
	o.Port = 70000
	if _, err := sessions.Check(context.Background(), f.Client(t), lb.Client(t), o); err == nil {
		t.Error("port 70000 accepted")
	}

	// Without the instances there is nothing to check: an error.
	f.Fail = map[string]string{"DescribeInstances": "RequestLimitExceeded"}
	if _, err := sessions.Check(context.Background(), f.Client(t), lb.Client(t), opts); err == nil || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Errorf("instances error: %v", err)
	}
}

func TestCheckPagination(t *testing.T) {
	// Every Describe call follows its pages: one item a page.
	f, lb := world(t, web("i-1", "m5.large"), web("i-2", "m5.large"))
	f.PageSize = 1
	f.SecurityGroups = append(f.SecurityGroups, ec2fake.SecurityGroup{ID: "sg-extra"})
	f.Instances[2].Groups = []string{"sg-extra", "sg-handler"} // the second group admits VXLAN
	// The handlers' subnets have their own ACL, on the second page.
	handlers := f.NetworkACLs[0]
	handlers.ID, handlers.Subnets = "acl-handlers", []string{"subnet-h1", "subnet-h2"}
	f.NetworkACLs[0].Subnets = []string{"subnet-a", "subnet-lb-a", "subnet-lb-b"}
	f.NetworkACLs = append([]ec2fake.NetworkACL{{ID: "acl-other", Subnets: []string{"subnet-x"}}}, append(f.NetworkACLs, handlers)...)
	f.Sessions = []ec2fake.Session{{ID: "tms-a", ENI: "eni-2", Target: "tmt-ids", Number: 5}, {ID: "tms-b", ENI: "eni-2", Target: "tmt-ids", Number: 6}}
	r := check(t, f, lb, opts)
	want(t, r, sessions.OK, "instance i-2 ", "reach", "passes")
	want(t, r, sessions.OK, "instance i-2 ", "sessions", "2 of 3 sessions used")
	for _, x := range r.Findings {
		if x.Check == "reach" && x.Level != sessions.OK {
			t.Errorf("a page not followed? %s", x)
		}
	}
	for action, n := range map[string]int{"DescribeInstances": 2 + 2, "DescribeSecurityGroups": 2, "DescribeNetworkAcls": 2, "DescribeTrafficMirrorSessions": 2} {
		if got := f.CallsOf(action); len(got) != n {
			t.Errorf("%s: %q, want %d pages", action, got, n)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	f, lb := world(t, web("i-1", "c7g.large"))
	r := check(t, f, lb, opts)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []map[string]string
		Fail     int
		Types    struct{ Date string } `json:"instance_types"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Fail != 1 || doc.Types.Date != "2026-11-26" {
		t.Errorf("json: %s", b.String())
	}
	found := false
	for _, x := range doc.Findings {
		if x["level"] == "fail" && x["interface"] == "eni-1" && x["check"] == "instance type" && x["fix"] != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("json lacks the instance type failure: %s", b.String())
	}
}

func TestSyncRefusesWhatCheckFails(t *testing.T) {
	f, lb := world(t, web("i-1", "m5.large"), web("i-2", "c7g.large"))
	api, elb := f.Client(t), lb.Client(t)
	r, err := sessions.Sync(context.Background(), api, elb, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Report(&out, false)
	if r.Created != 1 || r.Refusals != 1 || !strings.Contains(out.String(),
		"refused  instance i-2 interface eni-2 number 1 - pre-flight instance i-2 interface eni-2 instance type: c7g.large: family c7g cannot be a mirror source") {
		t.Errorf("sync:\n%s", out.String())
	}
	// The failure itself is in the report, before the steps.
	if !strings.HasPrefix(out.String(), "fail  instance i-2 interface eni-2  instance type: c7g.large") ||
		!strings.Contains(out.String(), "pre-flight check: ") {
		t.Errorf("sync report lacks the check's failure:\n%s", out.String())
	}
	if c := f.CallsOf("CreateTrafficMirrorSession"); len(c) != 1 || !strings.Contains(c[0], "eni-1") {
		t.Errorf("creates: %q", c)
	}

	// A target failure refuses every source; -force creates them anyway.
	lb.LoadBalancers[0].Listeners = nil
	f.Instances = append(f.Instances, web("i-3", "m5.large"))
	r, _ = sessions.Sync(context.Background(), api, elb, opts)
	out.Reset()
	r.Report(&out, false)
	if r.Created != 0 || !strings.Contains(out.String(), "refused  instance i-3 interface eni-3 number 1 - pre-flight target tmt-nlb (load balancer shadowtap) listener: no UDP listener") {
		t.Errorf("sync without listener:\n%s", out.String())
	}
	o := opts
	o.Force = true
	r, _ = sessions.Sync(context.Background(), api, elb, o)
	if r.Created != 2 || r.Check != nil {
		t.Errorf("forced: %+v", r)
	}
}
