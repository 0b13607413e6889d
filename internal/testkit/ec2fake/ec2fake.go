// Package ec2fake is a local fake of the EC2 Query API for the calls
// `shadowtap sessions sync` and `sessions check` make (DescribeInstances,
// DescribeTrafficMirrorSessions, CreateTrafficMirrorSession,
// DeleteTrafficMirrorSession, DescribeTrafficMirrorTargets,
// DescribeTrafficMirrorFilters, DescribeNetworkInterfaces,
// DescribeSecurityGroups, DescribeNetworkAcls): form-encoded actions, XML
// answers shaped as in the EC2 API reference, error documents,
// pagination. Tests only; it listens on loopback.
package ec2fake

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// Server speaks the EC2 Query protocol (form-encoded actions, XML
// answers shaped as in the EC2 API reference) for the calls sync and
// check make, with pagination and error responses.
type Server struct {
	Mu             sync.Mutex // guards the fields while serving
	Instances      []Instance
	Sessions       []Session
	Targets        []Target
	Filters        []Filter
	Interfaces     []Interface
	SecurityGroups []SecurityGroup
	NetworkACLs    []NetworkACL
	calls          []string
	Refuse         map[string]string // interface -> error code CreateTrafficMirrorSession answers
	Fail           map[string]string // action -> error code it answers with (UnauthorizedOperation, ...)
	PageSize       int
	nextID         int
}

type Instance struct {
	ID, ENI, Type, Subnet, VPC, State string
	AZ, IP                            string
	Groups                            []string // the primary interface's security groups
	Tags                              map[string]string
}

// Target is a traffic mirror target: of an NLB (ARN) or an interface.
type Target struct {
	ID, NLB, ENI string
}

// Filter is a traffic mirror filter.
type Filter struct {
	ID              string
	Ingress, Egress []Rule
}

// Rule is a filter rule. Zero ports mean no port range; zero Protocol, all.
type Rule struct {
	Number           int
	Accept           bool
	Protocol         int
	DstFrom, DstTo   int
	SrcFrom, SrcTo   int
	SrcCIDR, DstCIDR string
}

// Interface is a network interface (a mirror target's).
type Interface struct {
	ID, Subnet, AZ, IP string
	Groups             []string
}

// SecurityGroup has inbound permissions only: the check reads no others.
type SecurityGroup struct {
	ID      string
	Ingress []Permission
}

// Permission: Protocol "udp", "tcp" or "-1"; CIDRs or Groups it admits.
type Permission struct {
	Protocol      string
	From, To      int
	CIDRs, Groups []string
}

// NetworkACL with the subnets it is associated with.
type NetworkACL struct {
	ID      string
	Subnets []string
	Entries []ACLEntry
}

// ACLEntry: Protocol "17", "6" or "-1"; zero ports mean no port range.
type ACLEntry struct {
	Number   int
	Egress   bool
	Protocol string
	From, To int
	CIDR     string
	Allow    bool
}

type Session struct {
	ID, ENI, Target, Filter string
	Number, VNI             int
	PacketLength            int // 0: the whole packet
	Tags                    map[string]string
}

// Client returns an SDK client talking to a new server for f.
func (f *Server) Client(t testing.TB) *ec2.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RetryMaxAttempts: 1, HTTPClient: srv.Client()})
}

func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.Mu.Lock()
	defer f.Mu.Unlock()
	action := r.Form.Get("Action")
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	if code := f.Fail[action]; code != "" {
		f.calls = append(f.calls, action+" "+code)
		f.fail(w, code, "You are not authorized to perform this operation.")
		return
	}
	switch action {
	case "DescribeTrafficMirrorTargets":
		f.calls = append(f.calls, "DescribeTrafficMirrorTargets "+r.Form.Get("NextToken"))
		f.describeTargets(w, r)
	case "DescribeTrafficMirrorFilters":
		f.calls = append(f.calls, "DescribeTrafficMirrorFilters "+r.Form.Get("NextToken"))
		f.describeFilters(w, r)
	case "DescribeNetworkInterfaces":
		f.calls = append(f.calls, "DescribeNetworkInterfaces "+r.Form.Get("NextToken"))
		f.describeInterfaces(w, r)
	case "DescribeSecurityGroups":
		f.calls = append(f.calls, "DescribeSecurityGroups "+r.Form.Get("NextToken"))
		f.describeGroups(w, r)
	case "DescribeNetworkAcls":
		f.calls = append(f.calls, "DescribeNetworkAcls "+r.Form.Get("NextToken"))
		f.describeACLs(w, r)
	case "DescribeInstances":
		f.calls = append(f.calls, "DescribeInstances "+r.Form.Get("NextToken"))
		f.describeInstances(w, r)
	case "DescribeTrafficMirrorSessions":
		f.calls = append(f.calls, "DescribeTrafficMirrorSessions "+r.Form.Get("NextToken"))
		f.describeSessions(w, r)
	case "CreateTrafficMirrorSession":
		f.create(w, r)
	case "DeleteTrafficMirrorSession":
		id := r.Form.Get("TrafficMirrorSessionId")
		f.calls = append(f.calls, "DeleteTrafficMirrorSession "+id)
		i := slices.IndexFunc(f.Sessions, func(s Session) bool { return s.ID == id })
		if i < 0 {
			f.fail(w, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session ID '"+id+"' does not exist")
			return
		}
		f.Sessions = slices.Delete(f.Sessions, i, i+1)
		fmt.Fprintf(w, `<DeleteTrafficMirrorSessionResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req</requestId><trafficMirrorSessionId>%s</trafficMirrorSessionId></DeleteTrafficMirrorSessionResponse>`, id)
	default:
		f.fail(w, "InvalidAction", "The action "+action+" is not valid for this web service.")
	}
}

func (f *Server) fail(w http.ResponseWriter, code, msg string) {
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>req</RequestID></Response>`,
		code, esc(msg))
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// filters reads Filter.N.Name / Filter.N.Value.M.
func filters(r *http.Request) map[string][]string {
	out := map[string][]string{}
	for n := 1; ; n++ {
		name := r.Form.Get(fmt.Sprintf("Filter.%d.Name", n))
		if name == "" {
			return out
		}
		for m := 1; ; m++ {
			v := r.Form.Get(fmt.Sprintf("Filter.%d.Value.%d", n, m))
			if v == "" {
				break
			}
			out[name] = append(out[name], v)
		}
	}
}

func (f *Server) page(r *http.Request, n int) (start, end int, next string) {
	start, _ = strconv.Atoi(r.Form.Get("NextToken"))
	end = min(start+f.PageSize, n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return
}

func (f *Server) describeInstances(w http.ResponseWriter, r *http.Request) {
	fl := filters(r)
	var match []Instance
	for _, in := range f.Instances {
		ok := true
		for name, vals := range fl {
			var have string
			switch {
			case name == "instance-state-name":
				have = in.State
			case name == "subnet-id":
				have = in.Subnet
			case name == "vpc-id":
				have = in.VPC
			case name == "instance-id":
				have = in.ID
			case strings.HasPrefix(name, "tag:"):
				have = in.Tags[strings.TrimPrefix(name, "tag:")]
			}
			ok = ok && slices.Contains(vals, have)
		}
		if ok {
			match = append(match, in)
		}
	}
	start, end, next := f.page(r, len(match))
	var b strings.Builder
	b.WriteString(`<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req</requestId><reservationSet>`)
	for _, in := range match[start:end] {
		fmt.Fprintf(&b, `<item><reservationId>r-%s</reservationId><instancesSet><item><instanceId>%s</instanceId><instanceType>%s</instanceType>`+
			`<instanceState><code>16</code><name>%s</name></instanceState><placement><availabilityZone>%s</availabilityZone></placement>`+
			`<privateIpAddress>%s</privateIpAddress><subnetId>%s</subnetId><vpcId>%s</vpcId>`+
			`<networkInterfaceSet><item><networkInterfaceId>%s</networkInterfaceId><privateIpAddress>%s</privateIpAddress><attachment><deviceIndex>0</deviceIndex></attachment>%s</item>`+
			`<item><networkInterfaceId>%s-2</networkInterfaceId><attachment><deviceIndex>1</deviceIndex></attachment></item></networkInterfaceSet><tagSet>`,
			in.ID, in.ID, in.Type, in.State, in.AZ, in.IP, in.Subnet, in.VPC, in.ENI, in.IP, groupSet(in.Groups), in.ENI)
		for k, v := range in.Tags {
			fmt.Fprintf(&b, `<item><key>%s</key><value>%s</value></item>`, esc(k), esc(v))
		}
		b.WriteString(`</tagSet></item></instancesSet></item>`)
	}
	fmt.Fprintf(&b, `</reservationSet>%s</DescribeInstancesResponse>`, nextToken(next))
	w.Write([]byte(b.String()))
}

func nextToken(next string) string {
	if next == "" {
		return ""
	}
	return "<nextToken>" + next + "</nextToken>"
}

func (f *Server) describeSessions(w http.ResponseWriter, r *http.Request) {
	start, end, next := f.page(r, len(f.Sessions))
	var b strings.Builder
	b.WriteString(`<DescribeTrafficMirrorSessionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req</requestId><trafficMirrorSessionSet>`)
	for _, s := range f.Sessions[start:end] {
		fmt.Fprintf(&b, `<item><trafficMirrorSessionId>%s</trafficMirrorSessionId><trafficMirrorTargetId>%s</trafficMirrorTargetId>`+
			`<trafficMirrorFilterId>%s</trafficMirrorFilterId><networkInterfaceId>%s</networkInterfaceId><ownerId>123456789012</ownerId>`+
			`<packetLength>%d</packetLength><sessionNumber>%d</sessionNumber><virtualNetworkId>%d</virtualNetworkId><tagSet>`,
			s.ID, s.Target, s.Filter, s.ENI, s.PacketLength, s.Number, s.VNI)
		for k, v := range s.Tags {
			fmt.Fprintf(&b, `<item><key>%s</key><value>%s</value></item>`, esc(k), esc(v))
		}
		b.WriteString(`</tagSet></item>`)
	}
	fmt.Fprintf(&b, `</trafficMirrorSessionSet>%s</DescribeTrafficMirrorSessionsResponse>`, nextToken(next))
	w.Write([]byte(b.String()))
}

func (f *Server) create(w http.ResponseWriter, r *http.Request) {
	eni := r.Form.Get("NetworkInterfaceId")
	num, _ := strconv.Atoi(r.Form.Get("SessionNumber"))
	vni, _ := strconv.Atoi(r.Form.Get("VirtualNetworkId"))
	tags := map[string]string{}
	if r.Form.Get("TagSpecification.1.ResourceType") == "traffic-mirror-session" {
		for n := 1; r.Form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", n)) != ""; n++ {
			tags[r.Form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", n))] = r.Form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Value", n))
		}
	}
	f.calls = append(f.calls, fmt.Sprintf("CreateTrafficMirrorSession %s target=%s filter=%s number=%d vni=%d managed=%s instance=%s",
		eni, r.Form.Get("TrafficMirrorTargetId"), r.Form.Get("TrafficMirrorFilterId"), num, vni, tags["shadowtap:managed"], tags["shadowtap:instance-id"]))
	if code := f.Refuse[eni]; code != "" {
		f.fail(w, code, "Traffic mirroring is not supported for the instance type of network interface "+eni+".")
		return
	}
	f.nextID++
	s := Session{ID: fmt.Sprintf("tms-%04d", f.nextID), ENI: eni, Target: r.Form.Get("TrafficMirrorTargetId"),
		Filter: r.Form.Get("TrafficMirrorFilterId"), Number: num, VNI: vni, Tags: tags}
	f.Sessions = append(f.Sessions, s)
	fmt.Fprintf(w, `<CreateTrafficMirrorSessionResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req</requestId>`+
		`<trafficMirrorSession><trafficMirrorSessionId>%s</trafficMirrorSessionId><trafficMirrorTargetId>%s</trafficMirrorTargetId>`+
		`<trafficMirrorFilterId>%s</trafficMirrorFilterId><networkInterfaceId>%s</networkInterfaceId><sessionNumber>%d</sessionNumber>`+
		`<virtualNetworkId>%d</virtualNetworkId></trafficMirrorSession><clientToken>%s</clientToken></CreateTrafficMirrorSessionResponse>`,
		s.ID, s.Target, s.Filter, eni, num, vni, esc(r.Form.Get("ClientToken")))
}

func (f *Server) CallsOf(action string) []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, action) {
			out = append(out, c)
		}
	}
	return out
}

func (f *Server) Reset() {
	f.Mu.Lock()
	f.calls = nil
	f.Mu.Unlock()
}

func groupSet(ids []string) string {
	var b strings.Builder
	b.WriteString("<groupSet>")
	for _, g := range ids {
		fmt.Fprintf(&b, "<item><groupId>%s</groupId><groupName>%s</groupName></item>", esc(g), esc(g))
	}
	b.WriteString("</groupSet>")
	return b.String()
}

// list reads Name.1, Name.2, ...
func list(r *http.Request, name string) []string {
	var out []string
	for n := 1; r.Form.Get(fmt.Sprintf("%s.%d", name, n)) != ""; n++ {
		out = append(out, r.Form.Get(fmt.Sprintf("%s.%d", name, n)))
	}
	return out
}

// pick keeps the items whose id is asked for (all when none is), and says
// which asked-for id does not exist.
func pick[T any](items []T, id func(T) string, want []string) ([]T, string) {
	if len(want) == 0 {
		return items, ""
	}
	var out []T
	for _, w := range want {
		i := slices.IndexFunc(items, func(t T) bool { return id(t) == w })
		if i < 0 {
			return nil, w
		}
		out = append(out, items[i])
	}
	return out, ""
}

// respond writes a paged Describe answer: each item's XML inside setName.
func (f *Server) respond(w http.ResponseWriter, r *http.Request, action, setName string, items []string) {
	start, end, next := f.page(r, len(items))
	fmt.Fprintf(w, `<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req</requestId><%s>%s</%s>%s</%sResponse>`,
		action, setName, strings.Join(items[start:end], ""), setName, nextToken(next), action)
}

func (f *Server) describeTargets(w http.ResponseWriter, r *http.Request) {
	ts, missing := pick(f.Targets, func(t Target) string { return t.ID }, list(r, "TrafficMirrorTargetId"))
	if missing != "" {
		f.fail(w, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target ID '"+missing+"' does not exist")
		return
	}
	var items []string
	for _, t := range ts {
		typ, ref := "network-load-balancer", "<networkLoadBalancerArn>"+esc(t.NLB)+"</networkLoadBalancerArn>"
		if t.ENI != "" {
			typ, ref = "network-interface", "<networkInterfaceId>"+esc(t.ENI)+"</networkInterfaceId>"
		}
		items = append(items, fmt.Sprintf(`<item><trafficMirrorTargetId>%s</trafficMirrorTargetId>%s<type>%s</type><ownerId>123456789012</ownerId></item>`,
			esc(t.ID), ref, typ))
	}
	f.respond(w, r, "DescribeTrafficMirrorTargets", "trafficMirrorTargetSet", items)
}

func portRange(name string, from, to int) string {
	if from == 0 && to == 0 {
		return ""
	}
	return fmt.Sprintf("<%s><fromPort>%d</fromPort><toPort>%d</toPort></%s>", name, from, to, name)
}

func (f *Server) describeFilters(w http.ResponseWriter, r *http.Request) {
	fs, missing := pick(f.Filters, func(t Filter) string { return t.ID }, list(r, "TrafficMirrorFilterId"))
	if missing != "" {
		f.fail(w, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter ID '"+missing+"' does not exist")
		return
	}
	rules := func(id, dir string, rs []Rule) string {
		var b strings.Builder
		for i, ru := range rs {
			action := "reject"
			if ru.Accept {
				action = "accept"
			}
			fmt.Fprintf(&b, `<item><trafficMirrorFilterRuleId>tmfr-%s-%d</trafficMirrorFilterRuleId><trafficMirrorFilterId>%s</trafficMirrorFilterId>`+
				`<trafficDirection>%s</trafficDirection><ruleNumber>%d</ruleNumber><ruleAction>%s</ruleAction>`,
				dir, i, esc(id), dir, ru.Number, action)
			if ru.Protocol != 0 {
				fmt.Fprintf(&b, "<protocol>%d</protocol>", ru.Protocol)
			}
			b.WriteString(portRange("destinationPortRange", ru.DstFrom, ru.DstTo) + portRange("sourcePortRange", ru.SrcFrom, ru.SrcTo))
			fmt.Fprintf(&b, "<destinationCidrBlock>%s</destinationCidrBlock><sourceCidrBlock>%s</sourceCidrBlock></item>", cidr(ru.DstCIDR), cidr(ru.SrcCIDR))
		}
		return b.String()
	}
	var items []string
	for _, fl := range fs {
		items = append(items, fmt.Sprintf(`<item><trafficMirrorFilterId>%s</trafficMirrorFilterId><ingressFilterRuleSet>%s</ingressFilterRuleSet>`+
			`<egressFilterRuleSet>%s</egressFilterRuleSet><networkServiceSet/></item>`, esc(fl.ID), rules(fl.ID, "ingress", fl.Ingress), rules(fl.ID, "egress", fl.Egress)))
	}
	f.respond(w, r, "DescribeTrafficMirrorFilters", "trafficMirrorFilterSet", items)
}

func cidr(c string) string {
	if c == "" {
		return "0.0.0.0/0"
	}
	return esc(c)
}

func (f *Server) describeInterfaces(w http.ResponseWriter, r *http.Request) {
	is, missing := pick(f.Interfaces, func(t Interface) string { return t.ID }, list(r, "NetworkInterfaceId"))
	if missing != "" {
		f.fail(w, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '"+missing+"' does not exist")
		return
	}
	var items []string
	for _, in := range is {
		items = append(items, fmt.Sprintf(`<item><networkInterfaceId>%s</networkInterfaceId><subnetId>%s</subnetId><availabilityZone>%s</availabilityZone>`+
			`<privateIpAddress>%s</privateIpAddress><interfaceType>interface</interfaceType><status>in-use</status>%s</item>`,
			esc(in.ID), esc(in.Subnet), esc(in.AZ), esc(in.IP), groupSet(in.Groups)))
	}
	f.respond(w, r, "DescribeNetworkInterfaces", "networkInterfaceSet", items)
}

func (f *Server) describeGroups(w http.ResponseWriter, r *http.Request) {
	gs, missing := pick(f.SecurityGroups, func(t SecurityGroup) string { return t.ID }, list(r, "GroupId"))
	if missing != "" {
		f.fail(w, "InvalidGroup.NotFound", "The security group '"+missing+"' does not exist")
		return
	}
	var items []string
	for _, g := range gs {
		var b strings.Builder
		fmt.Fprintf(&b, `<item><ownerId>123456789012</ownerId><groupId>%s</groupId><groupName>%s</groupName><ipPermissions>`, esc(g.ID), esc(g.ID))
		for _, p := range g.Ingress {
			fmt.Fprintf(&b, "<item><ipProtocol>%s</ipProtocol>", esc(p.Protocol))
			if p.Protocol != "-1" {
				fmt.Fprintf(&b, "<fromPort>%d</fromPort><toPort>%d</toPort>", p.From, p.To)
			}
			b.WriteString("<groups>")
			for _, id := range p.Groups {
				fmt.Fprintf(&b, "<item><userId>123456789012</userId><groupId>%s</groupId></item>", esc(id))
			}
			b.WriteString("</groups><ipRanges>")
			for _, c := range p.CIDRs {
				fmt.Fprintf(&b, "<item><cidrIp>%s</cidrIp></item>", esc(c))
			}
			b.WriteString("</ipRanges></item>")
		}
		b.WriteString("</ipPermissions><ipPermissionsEgress/></item>")
		items = append(items, b.String())
	}
	f.respond(w, r, "DescribeSecurityGroups", "securityGroupInfo", items)
}

func (f *Server) describeACLs(w http.ResponseWriter, r *http.Request) {
	subnets := filters(r)["association.subnet-id"]
	var items []string
	for _, a := range f.NetworkACLs {
		if len(subnets) > 0 && !slices.ContainsFunc(a.Subnets, func(s string) bool { return slices.Contains(subnets, s) }) {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, `<item><networkAclId>%s</networkAclId><vpcId>vpc-1</vpcId><default>false</default><entrySet>`, esc(a.ID))
		for _, e := range a.Entries {
			action := "deny"
			if e.Allow {
				action = "allow"
			}
			fmt.Fprintf(&b, "<item><ruleNumber>%d</ruleNumber><protocol>%s</protocol><ruleAction>%s</ruleAction><egress>%t</egress><cidrBlock>%s</cidrBlock>",
				e.Number, esc(e.Protocol), action, e.Egress, esc(e.CIDR))
			if e.From != 0 || e.To != 0 {
				fmt.Fprintf(&b, "<portRange><from>%d</from><to>%d</to></portRange>", e.From, e.To)
			}
			b.WriteString("</item>")
		}
		b.WriteString("</entrySet><associationSet>")
		for _, s := range a.Subnets {
			fmt.Fprintf(&b, "<item><networkAclAssociationId>aclassoc-%s</networkAclAssociationId><networkAclId>%s</networkAclId><subnetId>%s</subnetId></item>",
				esc(s), esc(a.ID), esc(s))
		}
		b.WriteString("</associationSet></item>")
		items = append(items, b.String())
	}
	f.respond(w, r, "DescribeNetworkAcls", "networkAclSet", items)
}
