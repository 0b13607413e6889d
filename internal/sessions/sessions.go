// Package sessions keeps VPC Traffic Mirror sessions in step with the
// instances to mirror: a session for the primary network interface of
// every running instance that matches a selector and has none, and no
// session left for instances that are gone. It only ever deletes sessions
// it created (tagged shadowtap:managed=true). It talks to EC2 through the
// AWS SDK for Go v2.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// API is the part of the EC2 client sync uses.
type API interface {
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	DescribeTrafficMirrorSessions(context.Context, *ec2.DescribeTrafficMirrorSessionsInput, ...func(*ec2.Options)) (*ec2.DescribeTrafficMirrorSessionsOutput, error)
	CreateTrafficMirrorSession(context.Context, *ec2.CreateTrafficMirrorSessionInput, ...func(*ec2.Options)) (*ec2.CreateTrafficMirrorSessionOutput, error)
	DeleteTrafficMirrorSession(context.Context, *ec2.DeleteTrafficMirrorSessionInput, ...func(*ec2.Options)) (*ec2.DeleteTrafficMirrorSessionOutput, error)
	// Read-only calls of the pre-flight check.
	DescribeTrafficMirrorTargets(context.Context, *ec2.DescribeTrafficMirrorTargetsInput, ...func(*ec2.Options)) (*ec2.DescribeTrafficMirrorTargetsOutput, error)
	DescribeTrafficMirrorFilters(context.Context, *ec2.DescribeTrafficMirrorFiltersInput, ...func(*ec2.Options)) (*ec2.DescribeTrafficMirrorFiltersOutput, error)
	DescribeNetworkInterfaces(context.Context, *ec2.DescribeNetworkInterfacesInput, ...func(*ec2.Options)) (*ec2.DescribeNetworkInterfacesOutput, error)
	DescribeSecurityGroups(context.Context, *ec2.DescribeSecurityGroupsInput, ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
	DescribeNetworkAcls(context.Context, *ec2.DescribeNetworkAclsInput, ...func(*ec2.Options)) (*ec2.DescribeNetworkAclsOutput, error)
}

// Tags shadowtap puts on the sessions it creates.
const (
	TagManaged  = "shadowtap:managed"
	TagInstance = "shadowtap:instance-id"
)

// maxPerInterface is how many mirror sessions AWS allows per interface.
const maxPerInterface = 3

// Options say what to mirror where.
type Options struct {
	Target        string            // traffic mirror target id (the NLB's)
	Filter        string            // traffic mirror filter id
	VNI           int32             // VXLAN network id of the sessions
	SessionNumber int32             // preferred session number (priority, 1 first)
	Tags          map[string]string // instances with all these tags
	Subnets       []string          // in one of these subnets
	VPCs          []string          // in one of these VPCs
	DryRun        bool              // plan only
	DeleteAll     bool              // tear down: delete every session shadowtap created for Target
	Force         bool              // sync: create sessions even where the pre-flight check fails

	// What the pre-flight check compares against.
	Port      int            // production's service port, which the filter must let through both ways (80)
	SourceMTU int            // the sources' interface MTU (DefaultMTU)
	TargetMTU int            // an interface target's MTU (DefaultMTU)
	Types     *InstanceTypes // which instance types can be sources (DefaultInstanceTypes)
}

// Kind of a planned step.
type Kind string

const (
	Create  Kind = "create"
	Delete  Kind = "delete"
	Keep    Kind = "keep"    // already mirrored
	Refused Kind = "refused" // cannot be done; says why
	Warning Kind = "warning"
)

// Step is one line of the plan or the report.
type Step struct {
	Kind      Kind
	Instance  string
	Interface string
	Session   string
	Number    int32
	Why       string
}

func (s Step) String() string {
	parts := []string{fmt.Sprintf("%-8s", s.Kind)}
	if s.Instance != "" {
		parts = append(parts, "instance "+s.Instance)
	}
	if s.Interface != "" {
		parts = append(parts, "interface "+s.Interface)
	}
	if s.Session != "" {
		parts = append(parts, "session "+s.Session)
	}
	if s.Number > 0 {
		parts = append(parts, fmt.Sprintf("number %d", s.Number))
	}
	if s.Why != "" {
		parts = append(parts, "- "+s.Why)
	}
	return strings.Join(parts, " ")
}

// Result is what a sync did (or, dry, would do).
type Result struct {
	Steps                                  []Step
	Created, Deleted, Kept, Refusals, Warn int
	Check                                  *Report // the pre-flight check; nil with Force or DeleteAll
}

type instance struct {
	id, eni, itype string
	az, subnet, ip string
	groups         []string
}

// Sync makes the sessions match the selector. It never stops at the first
// refusal: every instance is handled and every refusal reported. Unless
// o.Force, it runs Check first and creates no session the check says would
// fail (lb reads the load balancer; it may be nil for an interface target).
func Sync(ctx context.Context, api API, lb ELBAPI, o Options) (Result, error) {
	var r Result
	if o.Target == "" || o.Filter == "" {
		return r, errors.New("sessions: -target and -filter are required")
	}
	if o.SessionNumber < 1 || o.SessionNumber > 32766 {
		return r, fmt.Errorf("sessions: session number %d is not between 1 and 32766", o.SessionNumber)
	}
	var instances []instance
	if !o.DeleteAll {
		var err error
		if instances, err = matching(ctx, api, o); err != nil {
			return r, err
		}
	}
	all, err := allSessions(ctx, api)
	if err != nil {
		return r, err
	}
	byENI := map[string][]types.TrafficMirrorSession{}
	for _, s := range all {
		byENI[aws.ToString(s.NetworkInterfaceId)] = append(byENI[aws.ToString(s.NetworkInterfaceId)], s)
	}
	if !o.Force && !o.DeleteAll {
		r.Check = check(ctx, api, lb, o, instances, all)
	}
	wanted := map[string]bool{}
	for _, in := range instances {
		wanted[in.eni] = true
		r.plan(ctx, api, o, in, byENI[in.eni])
	}
	// Sessions we created whose instance is gone or no longer selected.
	for _, s := range all {
		if !managed(s) || aws.ToString(s.TrafficMirrorTargetId) != o.Target || wanted[aws.ToString(s.NetworkInterfaceId)] {
			continue
		}
		why := "instance gone or no longer selected"
		if o.DeleteAll {
			why = "tearing down"
		}
		step := Step{Kind: Delete, Instance: tag(s.Tags, TagInstance), Interface: aws.ToString(s.NetworkInterfaceId),
			Session: aws.ToString(s.TrafficMirrorSessionId), Number: aws.ToInt32(s.SessionNumber), Why: why}
		if !o.DryRun {
			if _, err := api.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: s.TrafficMirrorSessionId}); err != nil {
				step.Kind, step.Why = Refused, "delete refused: "+describe(err)
			}
		}
		r.add(step)
	}
	return r, nil
}

func (r *Result) add(s Step) {
	r.Steps = append(r.Steps, s)
	switch s.Kind {
	case Create:
		r.Created++
	case Delete:
		r.Deleted++
	case Keep:
		r.Kept++
	case Refused:
		r.Refusals++
	case Warning:
		r.Warn++
	}
}

// plan handles one instance's primary interface.
func (r *Result) plan(ctx context.Context, api API, o Options, in instance, existing []types.TrafficMirrorSession) {
	for _, s := range existing {
		if aws.ToString(s.TrafficMirrorTargetId) == o.Target {
			why := "already mirrored to the target"
			if !managed(s) {
				why = "already mirrored to the target by a session shadowtap did not create"
			}
			r.add(Step{Kind: Keep, Instance: in.id, Interface: in.eni, Session: aws.ToString(s.TrafficMirrorSessionId),
				Number: aws.ToInt32(s.SessionNumber), Why: why})
			return
		}
	}
	if len(existing) >= maxPerInterface {
		r.add(Step{Kind: Refused, Instance: in.id, Interface: in.eni,
			Why: fmt.Sprintf("the interface has %d mirror sessions already, the most AWS allows", len(existing))})
		return
	}
	// Session numbers are priorities: a packet is mirrored by the first
	// session (lowest number) whose filter accepts it, and by no other.
	taken := map[int32]string{}
	for _, s := range existing {
		taken[aws.ToInt32(s.SessionNumber)] = aws.ToString(s.TrafficMirrorSessionId)
	}
	n := o.SessionNumber
	for taken[n] != "" && n < 32766 {
		n++
	}
	if n != o.SessionNumber {
		r.add(Step{Kind: Warning, Instance: in.id, Interface: in.eni, Number: n,
			Why: fmt.Sprintf("session number %d is taken by %s; using %d", o.SessionNumber, taken[o.SessionNumber], n)})
	}
	for _, s := range existing {
		k, id := aws.ToInt32(s.SessionNumber), aws.ToString(s.TrafficMirrorSessionId)
		if k < n {
			r.add(Step{Kind: Warning, Instance: in.id, Interface: in.eni, Session: id, Number: k,
				Why: fmt.Sprintf("comes before shadowtap's session (number %d): packets its filter accepts are not mirrored to shadowtap", n)})
		} else {
			r.add(Step{Kind: Warning, Instance: in.id, Interface: in.eni, Session: id, Number: k,
				Why: fmt.Sprintf("comes after shadowtap's session (number %d): it loses the packets both filters accept", n)})
		}
	}
	step := Step{Kind: Create, Instance: in.id, Interface: in.eni, Number: n}
	if r.Check != nil {
		if f, blocked := r.Check.Blocker(in.eni); blocked {
			step.Kind = Refused
			step.Why = fmt.Sprintf("pre-flight %s %s: %s (-force creates it anyway)", f.Subject, f.Check, f.Message)
			r.add(step)
			return
		}
	}
	if !o.DryRun {
		out, err := api.CreateTrafficMirrorSession(ctx, &ec2.CreateTrafficMirrorSessionInput{
			NetworkInterfaceId:    aws.String(in.eni),
			TrafficMirrorTargetId: aws.String(o.Target),
			TrafficMirrorFilterId: aws.String(o.Filter),
			SessionNumber:         aws.Int32(n),
			VirtualNetworkId:      aws.Int32(o.VNI),
			Description:           aws.String("shadowtap: mirror of " + in.id),
			ClientToken:           aws.String(fmt.Sprintf("shadowtap-%s-%s", in.eni, o.Target)),
			TagSpecifications: []types.TagSpecification{{
				ResourceType: types.ResourceTypeTrafficMirrorSession,
				Tags: []types.Tag{{Key: aws.String(TagManaged), Value: aws.String("true")},
					{Key: aws.String(TagInstance), Value: aws.String(in.id)},
					{Key: aws.String("Name"), Value: aws.String("shadowtap-" + in.id)}},
			}},
		})
		if err != nil {
			step.Kind = Refused
			step.Why = fmt.Sprintf("AWS refused (instance type %s): %s", in.itype, describe(err))
		} else {
			step.Session = aws.ToString(out.TrafficMirrorSession.TrafficMirrorSessionId)
		}
	}
	r.add(step)
}

func describe(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

func managed(s types.TrafficMirrorSession) bool { return tag(s.Tags, TagManaged) == "true" }

func tag(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// matching lists the running instances the selector names, with their
// primary interface, following every page.
func matching(ctx context.Context, api API, o Options) ([]instance, error) {
	out, err := describeInstances(ctx, api, selector(o))
	if err != nil {
		return nil, fmt.Errorf("sessions: describing instances: %s", describe(err))
	}
	return out, nil
}

func selector(o Options) []types.Filter {
	filters := []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"running"}}}
	keys := make([]string, 0, len(o.Tags))
	for k := range o.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{o.Tags[k]}})
	}
	if len(o.Subnets) > 0 {
		filters = append(filters, types.Filter{Name: aws.String("subnet-id"), Values: o.Subnets})
	}
	if len(o.VPCs) > 0 {
		filters = append(filters, types.Filter{Name: aws.String("vpc-id"), Values: o.VPCs})
	}
	return filters
}

// describeInstances lists the instances the filters select, each with its
// primary interface, following every page.
func describeInstances(ctx context.Context, api API, filters []types.Filter) ([]instance, error) {
	var out []instance
	p := ec2.NewDescribeInstancesPaginator(api, &ec2.DescribeInstancesInput{Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				for _, ni := range in.NetworkInterfaces {
					if ni.Attachment == nil || aws.ToInt32(ni.Attachment.DeviceIndex) != 0 {
						continue
					}
					x := instance{id: aws.ToString(in.InstanceId), eni: aws.ToString(ni.NetworkInterfaceId), itype: string(in.InstanceType),
						subnet: aws.ToString(in.SubnetId), ip: aws.ToString(ni.PrivateIpAddress)}
					if x.ip == "" {
						x.ip = aws.ToString(in.PrivateIpAddress)
					}
					if in.Placement != nil {
						x.az = aws.ToString(in.Placement.AvailabilityZone)
					}
					// The interface's groups are what a security group rule
					// naming the source's group matches.
					for _, g := range ni.Groups {
						x.groups = append(x.groups, aws.ToString(g.GroupId))
					}
					out = append(out, x)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b instance) int { return strings.Compare(a.id, b.id) })
	return out, nil
}

func allSessions(ctx context.Context, api API) ([]types.TrafficMirrorSession, error) {
	var out []types.TrafficMirrorSession
	p := ec2.NewDescribeTrafficMirrorSessionsPaginator(api, &ec2.DescribeTrafficMirrorSessionsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("sessions: describing mirror sessions: %s", describe(err))
		}
		out = append(out, page.TrafficMirrorSessions...)
	}
	return out, nil
}

// Report writes the pre-flight check's failures, the steps and a summary.
func (r Result) Report(w io.Writer, dry bool) {
	if r.Check != nil {
		for _, f := range r.Check.Findings {
			if f.Level == Fail {
				fmt.Fprintln(w, f)
			}
		}
		fmt.Fprintf(w, "pre-flight check: %d ok, %d warnings, %d failures (all of them: shadowtap sessions check)\n", r.Check.OK, r.Check.Warn, r.Check.Fail)
	}
	for _, s := range r.Steps {
		fmt.Fprintln(w, s)
	}
	verb := ""
	if dry {
		verb = " (dry run: nothing changed)"
	}
	fmt.Fprintf(w, "%d created, %d deleted, %d already mirrored, %d refused, %d warnings%s\n",
		r.Created, r.Deleted, r.Kept, r.Refusals, r.Warn, verb)
}

// Watch runs Sync every interval until ctx ends, reporting each run.
func Watch(ctx context.Context, api API, lb ELBAPI, o Options, every time.Duration, w io.Writer) error {
	for {
		r, err := Sync(ctx, api, lb, o)
		if err != nil {
			fmt.Fprintln(w, "sync failed:", err)
		} else {
			fmt.Fprintf(w, "--- %s\n", time.Now().UTC().Format(time.RFC3339))
			r.Report(w, o.DryRun)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
