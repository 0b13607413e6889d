// Package ec2fake is a local fake of the EC2 Query API for the calls
// `shadowtap sessions sync` makes (DescribeInstances,
// DescribeTrafficMirrorSessions, CreateTrafficMirrorSession,
// DeleteTrafficMirrorSession): form-encoded actions, XML answers shaped as
// in the EC2 API reference, error documents, pagination. Tests only.
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
// answers shaped as in the EC2 API reference) for the four calls sync
// makes, with pagination and error responses.
type Server struct {
	Mu        sync.Mutex // guards the fields while serving
	Instances []Instance
	Sessions  []Session
	calls     []string
	Refuse    map[string]string // interface -> error code CreateTrafficMirrorSession answers
	PageSize  int
	nextID    int
}

type Instance struct {
	ID, ENI, Type, Subnet, VPC, State string
	Tags                              map[string]string
}

type Session struct {
	ID, ENI, Target, Filter string
	Number, VNI             int
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
	switch action {
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
			`<instanceState><code>16</code><name>%s</name></instanceState><subnetId>%s</subnetId><vpcId>%s</vpcId>`+
			`<networkInterfaceSet><item><networkInterfaceId>%s</networkInterfaceId><attachment><deviceIndex>0</deviceIndex></attachment></item>`+
			`<item><networkInterfaceId>%s-2</networkInterfaceId><attachment><deviceIndex>1</deviceIndex></attachment></item></networkInterfaceSet><tagSet>`,
			in.ID, in.ID, in.Type, in.State, in.Subnet, in.VPC, in.ENI, in.ENI)
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
			`<packetLength>0</packetLength><sessionNumber>%d</sessionNumber><virtualNetworkId>%d</virtualNetworkId><tagSet>`,
			s.ID, s.Target, s.Filter, s.ENI, s.Number, s.VNI)
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
