// Package elbfake is a local fake of the Elastic Load Balancing v2 Query
// API for the read-only calls `shadowtap sessions check` makes
// (DescribeLoadBalancers, DescribeListeners, DescribeLoadBalancerAttributes,
// DescribeTargetGroupAttributes, DescribeTargetHealth): form-encoded
// actions, XML answers shaped as in the API reference (Result wrapper,
// member lists), Marker/NextMarker pagination and ErrorResponse documents.
// Tests only; it listens on loopback.
package elbfake

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
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// Server holds the load balancers it describes.
type Server struct {
	Mu            sync.Mutex // guards the fields while serving
	LoadBalancers []LoadBalancer
	TargetGroups  []TargetGroup
	Fail          map[string]string // action -> error code it answers with (AccessDenied, ...)
	PageSize      int               // listeners per page
	calls         []string
}

// LoadBalancer with its listeners and attributes.
type LoadBalancer struct {
	ARN, Name, Type string            // Type "network" or "application"
	Zones           map[string]string // zone -> subnet
	Groups          []string          // security groups
	CrossZone       bool
	Listeners       []Listener
}

// Listener forwards Protocol:Port to a target group.
type Listener struct {
	Protocol    string // "UDP", "TCP_UDP", "TCP"
	Port        int
	TargetGroup string
}

// TargetGroup with its targets' health. CrossZone "" leaves the load
// balancer's setting in force; "true" or "false" overrides it.
type TargetGroup struct {
	ARN       string
	CrossZone string
	Targets   []Target
}

// Target is a registered instance (ID "i-...") or IP address (ID the
// address, for a target group of target type ip) and its health state
// ("healthy", "unhealthy", "initial", ...), registered on Port (0: 4789).
type Target struct {
	ID, State string
	Port      int
}

// Client returns an SDK client talking to a new server for f.
func (f *Server) Client(t testing.TB) *elb.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return elb.New(elb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RetryMaxAttempts: 1, HTTPClient: srv.Client()})
}

func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.Mu.Lock()
	defer f.Mu.Unlock()
	action := r.Form.Get("Action")
	w.Header().Set("Content-Type", "text/xml")
	f.calls = append(f.calls, strings.TrimSpace(action+" "+r.Form.Get("Marker")))
	if code := f.Fail[action]; code != "" {
		f.fail(w, http.StatusForbidden, code, "User is not authorized to perform: elasticloadbalancing:"+action)
		return
	}
	switch action {
	case "DescribeLoadBalancers":
		f.describeLoadBalancers(w, r)
	case "DescribeListeners":
		f.describeListeners(w, r)
	case "DescribeLoadBalancerAttributes":
		lb, ok := f.lb(w, r.Form.Get("LoadBalancerArn"))
		if ok {
			f.ok(w, action, fmt.Sprintf("<Attributes><member><Key>load_balancing.cross_zone.enabled</Key><Value>%t</Value></member>"+
				"<member><Key>deletion_protection.enabled</Key><Value>false</Value></member></Attributes>", lb.CrossZone))
		}
	case "DescribeTargetGroupAttributes":
		tg, ok := f.tg(w, r.Form.Get("TargetGroupArn"))
		if ok {
			v := tg.CrossZone
			if v == "" {
				v = "use_load_balancer_configuration"
			}
			f.ok(w, action, fmt.Sprintf("<Attributes><member><Key>load_balancing.cross_zone.enabled</Key><Value>%s</Value></member></Attributes>", v))
		}
	case "DescribeTargetHealth":
		tg, ok := f.tg(w, r.Form.Get("TargetGroupArn"))
		if !ok {
			return
		}
		var b strings.Builder
		b.WriteString("<TargetHealthDescriptions>")
		for _, t := range tg.Targets {
			port := t.Port
			if port == 0 {
				port = 4789
			}
			fmt.Fprintf(&b, "<member><Target><Id>%s</Id><Port>%d</Port></Target><HealthCheckPort>%d</HealthCheckPort><TargetHealth><State>%s</State></TargetHealth></member>",
				esc(t.ID), port, port, esc(t.State))
		}
		b.WriteString("</TargetHealthDescriptions>")
		f.ok(w, action, b.String())
	default:
		f.fail(w, http.StatusBadRequest, "InvalidAction", "Could not find operation "+action)
	}
}

func (f *Server) ok(w http.ResponseWriter, action, result string) {
	fmt.Fprintf(w, `<%sResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><%sResult>%s</%sResult>`+
		`<ResponseMetadata><RequestId>req</RequestId></ResponseMetadata></%sResponse>`, action, action, result, action, action)
}

func (f *Server) fail(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>%s</Code>`+
		`<Message>%s</Message></Error><RequestId>req</RequestId></ErrorResponse>`, code, esc(msg))
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (f *Server) lb(w http.ResponseWriter, arn string) (LoadBalancer, bool) {
	i := slices.IndexFunc(f.LoadBalancers, func(l LoadBalancer) bool { return l.ARN == arn })
	if i < 0 {
		f.fail(w, http.StatusBadRequest, "LoadBalancerNotFound", "One or more load balancers not found")
		return LoadBalancer{}, false
	}
	return f.LoadBalancers[i], true
}

func (f *Server) tg(w http.ResponseWriter, arn string) (TargetGroup, bool) {
	i := slices.IndexFunc(f.TargetGroups, func(t TargetGroup) bool { return t.ARN == arn })
	if i < 0 {
		f.fail(w, http.StatusBadRequest, "TargetGroupNotFound", "One or more target groups not found")
		return TargetGroup{}, false
	}
	return f.TargetGroups[i], true
}

func (f *Server) describeLoadBalancers(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString("<LoadBalancers>")
	for n := 1; r.Form.Get(fmt.Sprintf("LoadBalancerArns.member.%d", n)) != ""; n++ {
		lb, ok := f.lb(w, r.Form.Get(fmt.Sprintf("LoadBalancerArns.member.%d", n)))
		if !ok {
			return
		}
		fmt.Fprintf(&b, "<member><LoadBalancerArn>%s</LoadBalancerArn><LoadBalancerName>%s</LoadBalancerName><Type>%s</Type>"+
			"<Scheme>internal</Scheme><VpcId>vpc-1</VpcId><State><Code>active</Code></State><AvailabilityZones>", esc(lb.ARN), esc(lb.Name), esc(lb.Type))
		zones := make([]string, 0, len(lb.Zones))
		for z := range lb.Zones {
			zones = append(zones, z)
		}
		slices.Sort(zones)
		for _, z := range zones {
			fmt.Fprintf(&b, "<member><ZoneName>%s</ZoneName><SubnetId>%s</SubnetId></member>", esc(z), esc(lb.Zones[z]))
		}
		b.WriteString("</AvailabilityZones><SecurityGroups>")
		for _, g := range lb.Groups {
			fmt.Fprintf(&b, "<member>%s</member>", esc(g))
		}
		b.WriteString("</SecurityGroups></member>")
	}
	b.WriteString("</LoadBalancers>")
	f.ok(w, "DescribeLoadBalancers", b.String())
}

func (f *Server) describeListeners(w http.ResponseWriter, r *http.Request) {
	lb, ok := f.lb(w, r.Form.Get("LoadBalancerArn"))
	if !ok {
		return
	}
	start, _ := strconv.Atoi(r.Form.Get("Marker"))
	size := f.PageSize
	if size == 0 {
		size = 100
	}
	end := min(start+size, len(lb.Listeners))
	var b strings.Builder
	b.WriteString("<Listeners>")
	for i, l := range lb.Listeners[start:end] {
		fmt.Fprintf(&b, "<member><ListenerArn>%s/listener/%d</ListenerArn><LoadBalancerArn>%s</LoadBalancerArn><Port>%d</Port><Protocol>%s</Protocol>"+
			"<DefaultActions><member><Type>forward</Type><TargetGroupArn>%s</TargetGroupArn></member></DefaultActions></member>",
			esc(lb.ARN), start+i, esc(lb.ARN), l.Port, esc(l.Protocol), esc(l.TargetGroup))
	}
	b.WriteString("</Listeners>")
	if end < len(lb.Listeners) {
		fmt.Fprintf(&b, "<NextMarker>%d</NextMarker>", end)
	}
	f.ok(w, "DescribeListeners", b.String())
}

// CallsOf lists the calls of one action made so far, with their markers.
func (f *Server) CallsOf(action string) []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if c == action || strings.HasPrefix(c, action+" ") {
			out = append(out, c)
		}
	}
	return out
}
