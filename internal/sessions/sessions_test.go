package sessions_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/internal/sessions"
	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
)

var opts = sessions.Options{Target: "tmt-nlb", Filter: "tmf-http", VNI: 1234, SessionNumber: 1, Tags: map[string]string{"role": "web"}}

func TestCreateSkipRemove(t *testing.T) {
	f, lb := world(t, web("i-1", "m5.large"), web("i-2", "c5.large"), web("i-3", "m5.xlarge"),
		ec2fake.Instance{ID: "i-9", ENI: "eni-9", Type: "m5.large", Subnet: "subnet-a", VPC: "vpc-1", State: "running", Tags: map[string]string{"role": "db"}},
		ec2fake.Instance{ID: "i-8", ENI: "eni-8", Type: "m5.large", Subnet: "subnet-a", VPC: "vpc-1", State: "stopped", Tags: map[string]string{"role": "web"}})
	f.PageSize = 2
	api, elb := f.Client(t), lb.Client(t)
	ctx := context.Background()

	// First run: three sessions, across two pages of instances.
	r, err := sessions.Sync(ctx, api, elb, opts)
	if err != nil {
		t.Fatal(err)
	}
	creates := f.CallsOf("CreateTrafficMirrorSession")
	if r.Created != 3 || len(creates) != 3 || r.Refusals != 0 {
		t.Fatalf("created %d, calls %q", r.Created, creates)
	}
	if creates[0] != "CreateTrafficMirrorSession eni-1 target=tmt-nlb filter=tmf-http number=1 vni=1234 managed=true instance=i-1" {
		t.Errorf("create call %q", creates[0])
	}
	// Two pages of sources, then one of the handlers for the pre-flight check.
	if d := f.CallsOf("DescribeInstances"); len(d) != 3 || d[1] != "DescribeInstances 2" {
		t.Errorf("pagination: %q", d)
	}
	if r.Check == nil || r.Check.Fail != 0 {
		t.Errorf("pre-flight check in a working account: %+v", r.Check)
	}

	// Second run: nothing to do.
	f.Reset()
	r, _ = sessions.Sync(ctx, api, elb, opts)
	if r.Created != 0 || r.Kept != 3 || len(f.CallsOf("CreateTrafficMirrorSession")) != 0 {
		t.Errorf("second run: %+v", r)
	}

	// i-2 terminates; a session someone else created on i-9 to the same
	// target must survive.
	f.Mu.Lock()
	f.Instances[1].State = "terminated"
	f.Sessions = append(f.Sessions, ec2fake.Session{ID: "tms-theirs", ENI: "eni-9", Target: "tmt-nlb", Filter: "tmf-x", Number: 1, VNI: 1})
	f.Mu.Unlock()
	f.Reset()
	r, _ = sessions.Sync(ctx, api, elb, opts)
	dels := f.CallsOf("DeleteTrafficMirrorSession")
	if r.Deleted != 1 || len(dels) != 1 || dels[0] != "DeleteTrafficMirrorSession tms-0002" {
		t.Errorf("deletes %q, result %+v", dels, r)
	}
}

func TestRefusalsAndPriorities(t *testing.T) {
	f := &ec2fake.Server{PageSize: 50, Refuse: map[string]string{"eni-2": "InvalidParameterValue"},
		Instances: []ec2fake.Instance{web("i-1", "m5.large"), web("i-2", "t2.micro"), web("i-3", "m5.large"), web("i-4", "m5.large")},
		Sessions: []ec2fake.Session{
			// i-3 has three sessions already: AWS's limit.
			{ID: "tms-a", ENI: "eni-3", Target: "tmt-ids", Number: 1}, {ID: "tms-b", ENI: "eni-3", Target: "tmt-ids", Number: 2},
			{ID: "tms-c", ENI: "eni-3", Target: "tmt-ids", Number: 3},
			// i-4 has an intrusion-detection session at number 1.
			{ID: "tms-ids", ENI: "eni-4", Target: "tmt-ids", Number: 1},
		}}
	// -force skips the pre-flight check, which would refuse t2.micro and
	// the interface at its limit itself (TestSyncRefusesWhatCheckFails):
	// this test is about what AWS refuses and the priorities sync picks.
	o := opts
	o.Force = true
	r, err := sessions.Sync(context.Background(), f.Client(t), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Report(&out, false)
	report := out.String()
	for _, want := range []string{
		"refused  instance i-2 interface eni-2 number 1 - AWS refused (instance type t2.micro): InvalidParameterValue: Traffic mirroring is not supported",
		"refused  instance i-3 interface eni-3 - the interface has 3 mirror sessions already, the most AWS allows",
		"warning  instance i-4 interface eni-4 number 2 - session number 1 is taken by tms-ids; using 2",
		"warning  instance i-4 interface eni-4 session tms-ids number 1 - comes before shadowtap's session (number 2)",
		"create   instance i-4 interface eni-4 session tms-0002 number 2",
		"create   instance i-1 interface eni-1 session tms-0001 number 1",
		"2 created, 0 deleted, 0 already mirrored, 2 refused, 2 warnings",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	// No call was made for the interface at its limit.
	for _, c := range f.CallsOf("CreateTrafficMirrorSession") {
		if strings.Contains(c, "eni-3") {
			t.Errorf("create attempted at the limit: %s", c)
		}
	}
}

func TestDryRun(t *testing.T) {
	f, lb := world(t, web("i-1", "m5.large"))
	f.Sessions = []ec2fake.Session{{ID: "tms-old", ENI: "eni-gone", Target: "tmt-nlb", Number: 1, Tags: map[string]string{sessions.TagManaged: "true", sessions.TagInstance: "i-gone"}}}
	o := opts
	o.DryRun = true
	r, err := sessions.Sync(context.Background(), f.Client(t), lb.Client(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Created != 1 || r.Deleted != 1 || len(f.CallsOf("Create"))+len(f.CallsOf("Delete")) != 0 {
		t.Errorf("dry run: %+v", r)
	}
	var out bytes.Buffer
	r.Report(&out, true)
	if !strings.Contains(out.String(), "delete   instance i-gone interface eni-gone session tms-old") || !strings.Contains(out.String(), "dry run") {
		t.Errorf("plan:\n%s", out.String())
	}
}

func TestOptionsChecked(t *testing.T) {
	f := &ec2fake.Server{PageSize: 10}
	for _, o := range []sessions.Options{{Filter: "f", SessionNumber: 1}, {Target: "t", SessionNumber: 1}, {Target: "t", Filter: "f"}} {
		if _, err := sessions.Sync(context.Background(), f.Client(t), nil, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestDeleteAll(t *testing.T) {
	f, lb := world(t, web("i-1", "m5.large"))
	ctx := context.Background()
	elb := lb.Client(t)
	if r, _ := sessions.Sync(ctx, f.Client(t), elb, opts); r.Created != 1 {
		t.Fatalf("setup: %+v", r)
	}
	f.Mu.Lock()
	f.Sessions = append(f.Sessions, ec2fake.Session{ID: "tms-other", ENI: "eni-1", Target: "tmt-ids", Number: 2})
	f.Mu.Unlock()
	o := opts
	o.DeleteAll = true
	r, err := sessions.Sync(ctx, f.Client(t), elb, o)
	if err != nil {
		t.Fatal(err)
	}
	if d := f.CallsOf("DeleteTrafficMirrorSession"); r.Deleted != 1 || len(d) != 1 || d[0] != "DeleteTrafficMirrorSession tms-0001" {
		t.Errorf("deleted %d: %q", r.Deleted, d)
	}
}
