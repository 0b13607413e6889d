package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// ELBAPI is the part of the Elastic Load Balancing v2 client the checks
// use, all of it read-only.
type ELBAPI interface {
	DescribeLoadBalancers(context.Context, *elb.DescribeLoadBalancersInput, ...func(*elb.Options)) (*elb.DescribeLoadBalancersOutput, error)
	DescribeListeners(context.Context, *elb.DescribeListenersInput, ...func(*elb.Options)) (*elb.DescribeListenersOutput, error)
	DescribeLoadBalancerAttributes(context.Context, *elb.DescribeLoadBalancerAttributesInput, ...func(*elb.Options)) (*elb.DescribeLoadBalancerAttributesOutput, error)
	DescribeTargetGroupAttributes(context.Context, *elb.DescribeTargetGroupAttributesInput, ...func(*elb.Options)) (*elb.DescribeTargetGroupAttributesOutput, error)
	DescribeTargetHealth(context.Context, *elb.DescribeTargetHealthInput, ...func(*elb.Options)) (*elb.DescribeTargetHealthOutput, error)
}

// Level of a finding.
type Level string

const (
	OK   Level = "ok"
	Warn Level = "warn"
	Fail Level = "fail"
)

// Finding is one line of a check: what was looked at, what was found and,
// unless it is ok, what to do about it.
type Finding struct {
	Level     Level  `json:"level"`
	Subject   string `json:"subject"`             // "instance i-1 interface eni-1", "target tmt-1", "filter tmf-1", "mtu"
	Interface string `json:"interface,omitempty"` // the source interface the finding is about
	Check     string `json:"check"`
	Message   string `json:"message"`
	Fix       string `json:"fix,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%-4s  %s  %s: %s", f.Level, f.Subject, f.Check, f.Message)
	if f.Fix != "" {
		s += " - fix: " + f.Fix
	}
	return s
}

// Report is the outcome of Check.
type Report struct {
	Findings      []Finding `json:"findings"`
	OK            int       `json:"ok"`
	Warn          int       `json:"warn"`
	Fail          int       `json:"fail"`
	InstanceTypes struct {
		Source string `json:"source"`
		Date   string `json:"date"`
	} `json:"instance_types"`
}

func (r *Report) add(f Finding) {
	r.Findings = append(r.Findings, f)
	switch f.Level {
	case OK:
		r.OK++
	case Warn:
		r.Warn++
	case Fail:
		r.Fail++
	}
}

// Blocker returns the first failure that would make a session on eni
// fail: one about eni itself, or one about the target or the filter.
func (r *Report) Blocker(eni string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Level == Fail && (f.Interface == eni || f.Interface == "") {
			return f, true
		}
	}
	return Finding{}, false
}

// Write prints the findings, one a line, and a summary.
func (r *Report) Write(w io.Writer) {
	for _, f := range r.Findings {
		fmt.Fprintln(w, f)
	}
	fmt.Fprintf(w, "%d ok, %d warnings, %d failures (instance types: AWS's list of %s, %s)\n",
		r.OK, r.Warn, r.Fail, r.InstanceTypes.Date, r.InstanceTypes.Source)
}

// WriteJSON prints the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// VXLANPort is where AWS sends mirrored traffic.
const VXLANPort = 4789

const (
	// nlbPacketLength is how many bytes after the VXLAN header AWS keeps
	// of each mirrored packet when the target is a Network Load Balancer
	// (the session's PacketLength; 8500 is the default and the maximum).
	nlbPacketLength = 8500
	// innerEthernet is the mirrored frame's Ethernet header, which counts
	// against that length.
	innerEthernet = 14
	// encapOverhead is what AWS says mirroring adds to a packet over IPv4
	// (outer IP, UDP, VXLAN and the inner Ethernet header), which must fit
	// in an interface target's MTU.
	encapOverhead = 54
	// DefaultMTU is the MTU EC2 gives an instance's interface in a VPC
	// (jumbo frames): every type that can be a mirror source supports it.
	DefaultMTU = 9001
)

// Check looks, read-only, at everything that decides whether mirroring
// the selected instances to o.Target through o.Filter will work, and
// reports each with ok, warn or fail. Only errors that leave nothing to
// check (the instances or sessions cannot be listed) are returned; an
// API error on one check is that check's failure, with AWS's code.
func Check(ctx context.Context, api API, lb ELBAPI, o Options) (*Report, error) {
	if o.Target == "" || o.Filter == "" {
		return nil, errors.New("sessions: -target and -filter are required")
	}
	if o.Port < 0 || o.Port > 65535 || o.SourceMTU < 0 || o.TargetMTU < 0 {
		return nil, fmt.Errorf("sessions: port %d or MTU %d/%d out of range", o.Port, o.SourceMTU, o.TargetMTU)
	}
	instances, err := matching(ctx, api, o)
	if err != nil {
		return nil, err
	}
	all, err := allSessions(ctx, api)
	if err != nil {
		return nil, err
	}
	return check(ctx, api, lb, o, instances, all), nil
}

// check is Check on instances and sessions already listed.
func check(ctx context.Context, api API, lb ELBAPI, o Options, instances []instance, all []types.TrafficMirrorSession) *Report {
	c := &checker{api: api, elb: lb, o: o, r: &Report{}, types: o.Types}
	if c.types == nil {
		c.types = DefaultInstanceTypes()
	}
	if c.o.Port == 0 {
		c.o.Port = 80
	}
	if c.o.SourceMTU == 0 {
		c.o.SourceMTU = DefaultMTU
	}
	if c.o.TargetMTU == 0 {
		c.o.TargetMTU = DefaultMTU
	}
	c.r.InstanceTypes.Source, c.r.InstanceTypes.Date = c.types.Source, c.types.Date
	c.target(ctx)
	c.filter(ctx)
	c.loadReach(ctx)
	byENI := map[string][]types.TrafficMirrorSession{}
	for _, s := range all {
		byENI[aws.ToString(s.NetworkInterfaceId)] = append(byENI[aws.ToString(s.NetworkInterfaceId)], s)
	}
	if len(instances) == 0 {
		c.r.add(Finding{Level: Warn, Subject: "selection", Check: "instances",
			Message: "no running instance matches the selection", Fix: "check -tag, -subnet and -vpc"})
	}
	for _, in := range instances {
		c.source(in, byENI[in.eni])
	}
	c.mtu()
	return c.r
}

type checker struct {
	api   API
	elb   ELBAPI
	o     Options
	r     *Report
	types *InstanceTypes

	kind      types.TrafficMirrorTargetType // "" when the target could not be read
	lbName    string
	lbGroups  []string
	lbZones   map[string]string // zone -> the load balancer's subnet there
	crossZone bool
	healthy   map[string]int // zone -> healthy handlers in it (instance targets)
	handlers  []instance     // the load balancer's instance targets, or the interface target
	subnets   []string       // where the network ACLs must let VXLAN in
	hops      []hop          // security group sets VXLAN must pass, in order
	groups    map[string]types.SecurityGroup
	acls      map[string]types.NetworkAcl // subnet -> its network ACL
	reachErr  string                      // why security groups or ACLs could not be read
	partial   bool                        // the handlers behind the load balancer are unknown
}

// hop is one place where security groups filter the mirrored packets: the
// load balancer, or a handler behind it (which sees the sources' addresses,
// as UDP keeps the client address).
type hop struct {
	name   string
	groups []string
	also   []string // groups whose members count as allowed sources (the load balancer's)
}

func (c *checker) add(f Finding) { c.r.add(f) }

func (c *checker) tsubject() string { return "target " + c.o.Target }

// apiFail reports an API error as a failed check, with AWS's code.
func (c *checker) apiFail(subject, check, what string, err error) {
	c.add(Finding{Level: Fail, Subject: subject, Check: check, Message: what + ": " + describe(err),
		Fix: "fix the permission or the id AWS names; the check needs read access (ec2:Describe*, elasticloadbalancing:Describe*)"})
}

func (c *checker) target(ctx context.Context) {
	out, err := c.api.DescribeTrafficMirrorTargets(ctx, &ec2.DescribeTrafficMirrorTargetsInput{TrafficMirrorTargetIds: []string{c.o.Target}})
	if err != nil || len(out.TrafficMirrorTargets) == 0 {
		if err == nil {
			err = fmt.Errorf("no such traffic mirror target")
		}
		c.apiFail(c.tsubject(), "target", "describing the traffic mirror target", err)
		return
	}
	t := out.TrafficMirrorTargets[0]
	c.kind = t.Type
	switch t.Type {
	case types.TrafficMirrorTargetTypeNetworkLoadBalancer:
		c.nlb(ctx, aws.ToString(t.NetworkLoadBalancerArn))
	case types.TrafficMirrorTargetTypeNetworkInterface:
		c.iface(ctx, aws.ToString(t.NetworkInterfaceId))
	default:
		c.add(Finding{Level: Warn, Subject: c.tsubject(), Check: "target",
			Message: fmt.Sprintf("a %s target is not checked: shadowtap's deployment puts its handlers behind a Network Load Balancer", t.Type)})
	}
}

func (c *checker) iface(ctx context.Context, id string) {
	out, err := c.api.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{id}})
	if err != nil || len(out.NetworkInterfaces) == 0 {
		if err == nil {
			err = fmt.Errorf("no such interface")
		}
		c.apiFail(c.tsubject(), "target", "describing the target interface "+id, err)
		c.kind = ""
		return
	}
	ni := out.NetworkInterfaces[0]
	h := instance{id: id, eni: id, subnet: aws.ToString(ni.SubnetId), az: aws.ToString(ni.AvailabilityZone), ip: aws.ToString(ni.PrivateIpAddress)}
	for _, g := range ni.Groups {
		h.groups = append(h.groups, aws.ToString(g.GroupId))
	}
	c.handlers = []instance{h}
	c.subnets = []string{h.subnet}
	c.hops = []hop{{name: "interface " + id, groups: h.groups}}
	c.add(Finding{Level: OK, Subject: c.tsubject(), Check: "target",
		Message: fmt.Sprintf("network interface %s in %s (%s)", id, h.az, h.subnet)})
}

func (c *checker) nlb(ctx context.Context, arn string) {
	subj := c.tsubject()
	if c.elb == nil {
		c.add(Finding{Level: Fail, Subject: subj, Check: "load balancer", Message: "no Elastic Load Balancing client to read " + arn})
		c.kind = ""
		return
	}
	lbs, err := c.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}})
	if err != nil || len(lbs.LoadBalancers) == 0 {
		if err == nil {
			err = fmt.Errorf("no such load balancer")
		}
		c.apiFail(subj, "load balancer", "describing "+arn, err)
		c.kind = ""
		return
	}
	lb := lbs.LoadBalancers[0]
	c.lbName = aws.ToString(lb.LoadBalancerName)
	subj += " (load balancer " + c.lbName + ")"
	if lb.Type != elbtypes.LoadBalancerTypeEnumNetwork {
		c.add(Finding{Level: Fail, Subject: subj, Check: "load balancer", Message: fmt.Sprintf("is a %s load balancer", lb.Type),
			Fix: "a mirror target must be a Network Load Balancer"})
	}
	c.lbGroups = lb.SecurityGroups
	c.lbZones = map[string]string{}
	for _, z := range lb.AvailabilityZones {
		c.lbZones[aws.ToString(z.ZoneName)] = aws.ToString(z.SubnetId)
		c.subnets = append(c.subnets, aws.ToString(z.SubnetId))
	}
	if len(c.lbGroups) > 0 {
		c.hops = append(c.hops, hop{name: "load balancer " + c.lbName, groups: c.lbGroups})
	}

	// The listener: without UDP 4789, AWS accepts the sessions and mirrors nothing.
	var listener *elbtypes.Listener
	p := elb.NewDescribeListenersPaginator(c.elb, &elb.DescribeListenersInput{LoadBalancerArn: aws.String(arn)})
	for p.HasMorePages() && listener == nil {
		page, err := p.NextPage(ctx)
		if err != nil {
			c.apiFail(subj, "listener", "describing listeners", err)
			return
		}
		for i, l := range page.Listeners {
			if aws.ToInt32(l.Port) == VXLANPort && (l.Protocol == elbtypes.ProtocolEnumUdp || l.Protocol == elbtypes.ProtocolEnumTcpUdp) {
				listener = &page.Listeners[i]
				break
			}
		}
	}
	if listener == nil {
		c.add(Finding{Level: Fail, Subject: subj, Check: "listener", Message: "no UDP listener on port 4789: AWS accepts the sessions and mirrors nothing, without an error",
			Fix: "add a UDP (or TCP_UDP) listener on port 4789 that forwards to the handlers' target group"})
		return
	}
	c.add(Finding{Level: OK, Subject: subj, Check: "listener", Message: fmt.Sprintf("%s listener on port 4789", listener.Protocol)})
	tg := ""
	for _, a := range listener.DefaultActions {
		if a.TargetGroupArn != nil {
			tg = aws.ToString(a.TargetGroupArn)
		} else if a.ForwardConfig != nil && len(a.ForwardConfig.TargetGroups) > 0 {
			tg = aws.ToString(a.ForwardConfig.TargetGroups[0].TargetGroupArn)
		}
	}
	if tg == "" {
		c.add(Finding{Level: Fail, Subject: subj, Check: "targets", Message: "the UDP 4789 listener forwards to no target group",
			Fix: "forward the listener to the handlers' target group"})
		return
	}
	c.health(ctx, subj, tg)
	c.cross(ctx, subj, arn, tg)
}

func (c *checker) health(ctx context.Context, subj, tg string) {
	out, err := c.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg)})
	if err != nil {
		c.apiFail(subj, "targets", "describing target health", err)
		c.partial = true
		return
	}
	healthy := map[string]bool{}
	var ids, sick []string
	for _, d := range out.TargetHealthDescriptions {
		id := aws.ToString(d.Target.Id)
		ids = append(ids, id)
		if d.TargetHealth != nil && d.TargetHealth.State == elbtypes.TargetHealthStateEnumHealthy {
			healthy[id] = true
		} else {
			state := "unknown"
			if d.TargetHealth != nil {
				state = string(d.TargetHealth.State)
			}
			sick = append(sick, id+" "+state)
		}
	}
	switch {
	case len(healthy) == 0:
		c.add(Finding{Level: Fail, Subject: subj, Check: "targets", Message: fmt.Sprintf("no healthy handler among %d targets %v", len(ids), sick),
			Fix: "start the handlers (shadowtap answers the health check on TCP 4789) and register them in the target group"})
	case len(sick) > 0:
		c.add(Finding{Level: Warn, Subject: subj, Check: "targets", Message: fmt.Sprintf("%d healthy, not healthy: %s", len(healthy), strings.Join(sick, ", ")),
			Fix: "look at the unhealthy handlers (journalctl -u shadowtap)"})
	default:
		c.add(Finding{Level: OK, Subject: subj, Check: "targets", Message: fmt.Sprintf("%d healthy handlers", len(healthy))})
	}
	// The handlers' zones, subnets and groups, for the zone and reachability checks.
	var inst []string
	for _, id := range ids {
		if strings.HasPrefix(id, "i-") {
			inst = append(inst, id)
		}
	}
	if len(inst) == 0 {
		c.partial = len(ids) > 0 // IP targets: their groups and subnets are not known here
		return
	}
	hs, err := describeInstances(ctx, c.api, []types.Filter{{Name: aws.String("instance-id"), Values: inst}})
	if err != nil {
		c.apiFail(subj, "targets", "describing the handler instances", err)
		c.partial = true
		return
	}
	c.healthy = map[string]int{}
	for _, h := range hs {
		if healthy[h.id] {
			c.healthy[h.az]++
		}
		c.handlers = append(c.handlers, h)
		if !slices.Contains(c.subnets, h.subnet) {
			c.subnets = append(c.subnets, h.subnet)
		}
		c.hops = append(c.hops, hop{name: "handler " + h.id, groups: h.groups, also: c.lbGroups})
	}
}

const crossZoneKey = "load_balancing.cross_zone.enabled"

func (c *checker) cross(ctx context.Context, subj, arn, tg string) {
	la, err := c.elb.DescribeLoadBalancerAttributes(ctx, &elb.DescribeLoadBalancerAttributesInput{LoadBalancerArn: aws.String(arn)})
	if err != nil {
		c.apiFail(subj, "cross-zone", "describing load balancer attributes", err)
		return
	}
	for _, a := range la.Attributes {
		if aws.ToString(a.Key) == crossZoneKey {
			c.crossZone = aws.ToString(a.Value) == "true"
		}
	}
	// A target group can override the load balancer's setting.
	ta, err := c.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(tg)})
	if err != nil {
		c.apiFail(subj, "cross-zone", "describing target group attributes", err)
		return
	}
	for _, a := range ta.Attributes {
		if aws.ToString(a.Key) == crossZoneKey && aws.ToString(a.Value) != "use_load_balancer_configuration" {
			c.crossZone = aws.ToString(a.Value) == "true"
		}
	}
	if c.crossZone {
		c.add(Finding{Level: OK, Subject: subj, Check: "cross-zone", Message: "cross-zone load balancing is on: every zone's node reaches every healthy handler"})
		return
	}
	c.add(Finding{Level: Warn, Subject: subj, Check: "cross-zone", Message: "cross-zone load balancing is off: mirrored packets reach only handlers in the zone of the node they arrive at",
		Fix: "turn on load_balancing.cross_zone.enabled, or keep a healthy handler in every zone with sources (checked per source below)"})
}

// filter checks the mirror filter: requests to the service port must be
// accepted inbound and production's responses outbound.
func (c *checker) filter(ctx context.Context) {
	subj := "filter " + c.o.Filter
	out, err := c.api.DescribeTrafficMirrorFilters(ctx, &ec2.DescribeTrafficMirrorFiltersInput{TrafficMirrorFilterIds: []string{c.o.Filter}})
	if err != nil || len(out.TrafficMirrorFilters) == 0 {
		if err == nil {
			err = fmt.Errorf("no such traffic mirror filter")
		}
		c.apiFail(subj, "filter", "describing the traffic mirror filter", err)
		return
	}
	f := out.TrafficMirrorFilters[0]
	n := len(f.IngressFilterRules) + len(f.EgressFilterRules)
	switch {
	case n > maxFilterRules:
		c.add(Finding{Level: Fail, Subject: subj, Check: "rules", Message: fmt.Sprintf("%d rules, more than the %d AWS allows per filter", n, maxFilterRules),
			Fix: "merge rules (port ranges) or split the traffic over sessions with their own filters"})
	default:
		c.add(Finding{Level: OK, Subject: subj, Check: "rules", Message: fmt.Sprintf("%d of the %d rules AWS allows per filter", n, maxFilterRules)})
	}
	port := int32(c.o.Port)
	if lvl, msg := firstRule(f.IngressFilterRules, port, true); lvl == OK {
		c.add(Finding{Level: OK, Subject: subj, Check: "requests", Message: msg})
	} else {
		c.add(Finding{Level: Fail, Subject: subj, Check: "requests", Message: msg + ": no request would be mirrored",
			Fix: fmt.Sprintf("add an inbound accept rule for TCP with destination port %d, numbered before any reject rule", port)})
	}
	if lvl, msg := firstRule(f.EgressFilterRules, port, false); lvl == OK {
		c.add(Finding{Level: OK, Subject: subj, Check: "responses", Message: msg})
	} else {
		c.add(Finding{Level: Warn, Subject: subj, Check: "responses", Message: msg + ": production's responses are not mirrored, so there is nothing to compare the test environment's answers with",
			Fix: fmt.Sprintf("add an outbound accept rule for TCP with source port %d", port)})
	}
}

const maxFilterRules = 10

// firstRule evaluates the rules of one direction, in rule-number order as
// AWS does, for TCP to (inbound) or from (outbound) the service port.
// Addresses are not known here: an accept rule matches whatever its CIDR,
// a reject rule only when it covers every address.
func firstRule(rules []types.TrafficMirrorFilterRule, port int32, inbound bool) (Level, string) {
	rules = slices.Clone(rules)
	sort.Slice(rules, func(i, j int) bool { return aws.ToInt32(rules[i].RuleNumber) < aws.ToInt32(rules[j].RuleNumber) })
	dir, what := "outbound", "TCP from port"
	if inbound {
		dir, what = "inbound", "TCP to port"
	}
	for _, r := range rules {
		if p := aws.ToInt32(r.Protocol); p != 0 && p != 6 {
			continue
		}
		pr := r.SourcePortRange
		if inbound {
			pr = r.DestinationPortRange
		}
		if pr != nil && (port < aws.ToInt32(pr.FromPort) || port > aws.ToInt32(pr.ToPort)) {
			continue
		}
		if r.RuleAction == types.TrafficMirrorRuleActionAccept {
			return OK, fmt.Sprintf("%s rule %d accepts %s %d", dir, aws.ToInt32(r.RuleNumber), what, port)
		}
		if everywhere(aws.ToString(r.SourceCidrBlock)) && everywhere(aws.ToString(r.DestinationCidrBlock)) {
			return Fail, fmt.Sprintf("%s rule %d rejects %s %d", dir, aws.ToInt32(r.RuleNumber), what, port)
		}
	}
	return Fail, fmt.Sprintf("no %s rule accepts %s %d", dir, what, port)
}

func everywhere(cidr string) bool { return cidr == "" || cidr == "0.0.0.0/0" || cidr == "::/0" }

// source checks one source interface: its instance type, the sessions on
// it, its zone and whether its VXLAN packets get through to the handlers.
func (c *checker) source(in instance, existing []types.TrafficMirrorSession) {
	subj := fmt.Sprintf("instance %s interface %s", in.id, in.eni)
	add := func(f Finding) {
		f.Subject, f.Interface = subj, in.eni
		c.add(f)
	}
	lvl, msg := c.types.Judge(in.itype)
	f := Finding{Level: lvl, Check: "instance type", Message: msg}
	switch lvl {
	case Fail:
		f.Fix = "mirror instances of a type AWS does not exclude, or change this instance's type (" + c.types.Source + ")"
	case Warn:
		f.Fix = "check " + c.types.Source + " and, if AWS lists it now, give -instance-types a newer list"
	}
	add(f)
	c.sessions(add, existing)
	c.zone(add, in)
	c.reach(add, in)
}

func (c *checker) sessions(add func(Finding), existing []types.TrafficMirrorSession) {
	var ours *types.TrafficMirrorSession
	for i, s := range existing {
		if aws.ToString(s.TrafficMirrorTargetId) == c.o.Target {
			ours = &existing[i]
		}
	}
	switch {
	case ours != nil:
		add(Finding{Level: OK, Check: "sessions", Message: fmt.Sprintf("already mirrored to the target by %s (number %d); %d of %d sessions used",
			aws.ToString(ours.TrafficMirrorSessionId), aws.ToInt32(ours.SessionNumber), len(existing), maxPerInterface)})
		// A packet length set on the session cuts every longer packet,
		// whatever the target could take.
		if pl := int(aws.ToInt32(ours.PacketLength)); pl > 0 && pl < c.o.SourceMTU+innerEthernet && pl < nlbPacketLength {
			add(Finding{Level: Warn, Check: "packet length", Message: fmt.Sprintf("%s keeps only %d bytes of each packet after the VXLAN header: longer packets reach the handlers cut",
				aws.ToString(ours.TrafficMirrorSessionId), pl),
				Fix: fmt.Sprintf("aws ec2 modify-traffic-mirror-session --traffic-mirror-session-id %s --remove-fields packet-length", aws.ToString(ours.TrafficMirrorSessionId))})
		}
	case len(existing) >= maxPerInterface:
		ids := make([]string, len(existing))
		for i, s := range existing {
			ids[i] = aws.ToString(s.TrafficMirrorSessionId)
		}
		add(Finding{Level: Fail, Check: "sessions", Message: fmt.Sprintf("%d sessions already (%s): AWS allows %d per interface and will not raise it",
			len(existing), strings.Join(ids, ", "), maxPerInterface), Fix: "delete one of them, or mirror another interface"})
		return
	default:
		add(Finding{Level: OK, Check: "sessions", Message: fmt.Sprintf("%d of %d sessions used", len(existing), maxPerInterface)})
	}
	// Session numbers are priorities: a packet goes to the first session,
	// lowest number, whose filter accepts it, and to no other.
	n := c.o.SessionNumber
	if ours != nil {
		n = aws.ToInt32(ours.SessionNumber)
	} else {
		taken := map[int32]string{}
		for _, s := range existing {
			taken[aws.ToInt32(s.SessionNumber)] = aws.ToString(s.TrafficMirrorSessionId)
		}
		for taken[n] != "" && n < 32766 {
			n++
		}
		if n != c.o.SessionNumber {
			add(Finding{Level: Warn, Check: "session number", Message: fmt.Sprintf("number %d is taken by %s; sync would use %d", c.o.SessionNumber, taken[c.o.SessionNumber], n),
				Fix: "pick a free -session-number, or accept the next free one"})
		}
	}
	for _, s := range existing {
		if ours != nil && s.TrafficMirrorSessionId == ours.TrafficMirrorSessionId {
			continue
		}
		k, id := aws.ToInt32(s.SessionNumber), aws.ToString(s.TrafficMirrorSessionId)
		if k < n {
			add(Finding{Level: Warn, Check: "precedence", Message: fmt.Sprintf("%s (number %d, target %s) comes before shadowtap's (number %d): packets its filter accepts never reach shadowtap",
				id, k, aws.ToString(s.TrafficMirrorTargetId), n), Fix: "give shadowtap a lower -session-number, or narrow that session's filter so it does not accept the service port"})
		} else {
			add(Finding{Level: Warn, Check: "precedence", Message: fmt.Sprintf("%s (number %d, target %s) comes after shadowtap's (number %d): it loses the packets both filters accept",
				id, k, aws.ToString(s.TrafficMirrorTargetId), n), Fix: "if that tool needs the service port too, it must take it from shadowtap's handlers instead"})
		}
	}
}

func (c *checker) zone(add func(Finding), in instance) {
	if c.kind != types.TrafficMirrorTargetTypeNetworkLoadBalancer || c.lbZones == nil || c.crossZone {
		return
	}
	if _, ok := c.lbZones[in.az]; !ok {
		add(Finding{Level: Fail, Check: "zone", Message: fmt.Sprintf("the load balancer has no node in %s and cross-zone load balancing is off", in.az),
			Fix: fmt.Sprintf("turn on cross-zone load balancing (AWS recommends it for mirror targets), or run the load balancer and a handler in %s", in.az)})
		return
	}
	if c.healthy != nil && c.healthy[in.az] == 0 {
		add(Finding{Level: Fail, Check: "zone", Message: fmt.Sprintf("no healthy handler in %s and cross-zone load balancing is off", in.az),
			Fix: fmt.Sprintf("turn on cross-zone load balancing, or run a handler in %s", in.az)})
		return
	}
	add(Finding{Level: OK, Check: "zone", Message: fmt.Sprintf("a load balancer node and a healthy handler in %s", in.az)})
}

// loadReach reads the security groups and network ACLs the mirrored
// packets must pass.
func (c *checker) loadReach(ctx context.Context) {
	if c.kind == "" || len(c.hops)+len(c.subnets) == 0 {
		return
	}
	var ids []string
	for _, h := range c.hops {
		for _, g := range h.groups {
			if !slices.Contains(ids, g) {
				ids = append(ids, g)
			}
		}
	}
	c.groups = map[string]types.SecurityGroup{}
	if len(ids) > 0 {
		p := ec2.NewDescribeSecurityGroupsPaginator(c.api, &ec2.DescribeSecurityGroupsInput{GroupIds: ids})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				c.reachErr = "describing security groups: " + describe(err)
				return
			}
			for _, g := range page.SecurityGroups {
				c.groups[aws.ToString(g.GroupId)] = g
			}
		}
	}
	c.acls = map[string]types.NetworkAcl{}
	if len(c.subnets) > 0 {
		p := ec2.NewDescribeNetworkAclsPaginator(c.api, &ec2.DescribeNetworkAclsInput{
			Filters: []types.Filter{{Name: aws.String("association.subnet-id"), Values: c.subnets}}})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				c.reachErr = "describing network ACLs: " + describe(err)
				return
			}
			for _, a := range page.NetworkAcls {
				for _, as := range a.Associations {
					c.acls[aws.ToString(as.SubnetId)] = a
				}
			}
		}
	}
}

// reach says whether UDP 4789 from the source's address gets through every
// network ACL and security group on the way to the handlers.
func (c *checker) reach(add func(Finding), in instance) {
	if c.kind == "" {
		return
	}
	if c.reachErr != "" {
		add(Finding{Level: Fail, Check: "reach", Message: "could not check: " + c.reachErr,
			Fix: "grant ec2:DescribeSecurityGroups and ec2:DescribeNetworkAcls, or fix what AWS names"})
		return
	}
	src, err := netip.ParseAddr(in.ip)
	if err != nil {
		add(Finding{Level: Warn, Check: "reach", Message: "the instance has no private IPv4 address to check"})
		return
	}
	for _, sn := range c.subnets {
		acl, ok := c.acls[sn]
		if !ok {
			add(Finding{Level: Warn, Check: "reach", Message: "no network ACL found for subnet " + sn})
			continue
		}
		if allowed, why := aclAllows(acl, src); !allowed {
			add(Finding{Level: Fail, Check: "reach", Message: fmt.Sprintf("network ACL %s of subnet %s drops UDP 4789 from %s (%s)", aws.ToString(acl.NetworkAclId), sn, src, why),
				Fix: fmt.Sprintf("add an inbound allow entry for UDP 4789 from %s (or the sources' CIDR), numbered before %s", src, why)})
			return
		}
	}
	for _, h := range c.hops {
		if !c.groupsAllow(h, src, in.groups) {
			add(Finding{Level: Fail, Check: "reach", Message: fmt.Sprintf("the security groups of %s (%s) do not let UDP 4789 in from %s", h.name, strings.Join(h.groups, ", "), src),
				Fix: fmt.Sprintf("allow inbound UDP 4789 from %s, the sources' CIDR or their security group", src)})
			return
		}
	}
	msg := fmt.Sprintf("UDP 4789 from %s passes %d network ACLs and %d sets of security groups", src, len(c.subnets), len(c.hops))
	if c.partial {
		add(Finding{Level: Warn, Check: "reach", Message: msg + ", but the handlers behind the load balancer could not be read",
			Fix: "fix the target group failure above and check again"})
		return
	}
	add(Finding{Level: OK, Check: "reach", Message: msg})
}

// aclAllows evaluates a network ACL's inbound entries in number order, the
// first match deciding, for UDP 4789 from src; nothing matching is a drop.
func aclAllows(acl types.NetworkAcl, src netip.Addr) (bool, string) {
	entries := slices.Clone(acl.Entries)
	sort.Slice(entries, func(i, j int) bool { return aws.ToInt32(entries[i].RuleNumber) < aws.ToInt32(entries[j].RuleNumber) })
	for _, e := range entries {
		if aws.ToBool(e.Egress) {
			continue
		}
		if p := aws.ToString(e.Protocol); p != "-1" && p != "17" && p != "udp" {
			continue
		}
		if e.PortRange != nil && (VXLANPort < aws.ToInt32(e.PortRange.From) || VXLANPort > aws.ToInt32(e.PortRange.To)) {
			continue
		}
		pfx, err := netip.ParsePrefix(aws.ToString(e.CidrBlock))
		if err != nil || !pfx.Contains(src) {
			continue
		}
		rule := fmt.Sprintf("rule %d", aws.ToInt32(e.RuleNumber))
		if aws.ToInt32(e.RuleNumber) == 32767 {
			rule = "the default rule"
		}
		return e.RuleAction == types.RuleActionAllow, rule
	}
	return false, "the default rule"
}

// groupsAllow says whether any of the hop's security groups lets UDP 4789
// in from src, by address or by one of the source's groups (or, for a
// handler, the load balancer's).
func (c *checker) groupsAllow(h hop, src netip.Addr, srcGroups []string) bool {
	for _, id := range h.groups {
		g, ok := c.groups[id]
		if !ok {
			continue
		}
		for _, p := range g.IpPermissions {
			proto := aws.ToString(p.IpProtocol)
			if proto != "-1" && proto != "udp" && proto != "17" {
				continue
			}
			if proto != "-1" && (VXLANPort < aws.ToInt32(p.FromPort) || VXLANPort > aws.ToInt32(p.ToPort)) {
				continue
			}
			for _, r := range p.IpRanges {
				if pfx, err := netip.ParsePrefix(aws.ToString(r.CidrIp)); err == nil && pfx.Contains(src) {
					return true
				}
			}
			for _, pair := range p.UserIdGroupPairs {
				if g := aws.ToString(pair.GroupId); slices.Contains(srcGroups, g) || slices.Contains(h.also, g) {
					return true
				}
			}
		}
	}
	return false
}

// mtu compares the sources' MTU with the packet length the target keeps.
func (c *checker) mtu() {
	var limit int // the largest source IP packet that arrives whole
	var why string
	switch c.kind {
	case types.TrafficMirrorTargetTypeNetworkLoadBalancer:
		limit = nlbPacketLength - innerEthernet
		why = fmt.Sprintf("behind a Network Load Balancer AWS keeps %d bytes after the VXLAN header, the inner Ethernet header included", nlbPacketLength)
	case types.TrafficMirrorTargetTypeNetworkInterface:
		limit = c.o.TargetMTU - encapOverhead
		why = fmt.Sprintf("the target interface's MTU is %d and mirroring adds %d bytes", c.o.TargetMTU, encapOverhead)
	default:
		return
	}
	subj := "mtu"
	if c.o.SourceMTU <= limit {
		c.add(Finding{Level: OK, Subject: subj, Check: "packet length", Message: fmt.Sprintf("sources' MTU %d fits: %s", c.o.SourceMTU, why)})
		return
	}
	c.add(Finding{Level: Warn, Subject: subj, Check: "packet length",
		Message: fmt.Sprintf("sources' MTU %d: packets longer than %d bytes reach the handlers cut (%s); shadowtap counts them in shadowtap_truncated_segments_total and loses the cut bytes as gaps", c.o.SourceMTU, limit, why),
		Fix: fmt.Sprintf("clamp the TCP MSS on the sources to %d (IPv6: %d), in both directions, e.g. iptables -t mangle -A POSTROUTING -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss %d and the same in PREROUTING; or set their MTU to %d; traffic through an internet gateway is at most 1500 bytes anyway",
			limit-40, limit-60, limit-40, limit)})
}
