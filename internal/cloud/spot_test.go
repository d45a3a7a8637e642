package cloud

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// fakeEC2 answers DescribeSpotPriceHistory the way EC2's Query API does:
// form-encoded request, XML response, nextToken paging. The region comes
// from the SigV4 credential scope, as it would select the endpoint for real.
type fakeEC2 struct {
	history  map[string][]fakePrice // region -> price history
	pageSize int
	failWith string // an EC2 error code to answer with, if set

	mu       sync.Mutex
	calls    int
	askedFor map[string][]string // region -> instance types in the last request
}

type fakePrice struct {
	az, instanceType, price string
	at                      time.Time
}

var credentialRegion = regexp.MustCompile(`Credential=[^/]+/[0-9]+/([^/]+)/ec2/aws4_request`)

type xmlSpotPrice struct {
	InstanceType       string `xml:"instanceType"`
	ProductDescription string `xml:"productDescription"`
	SpotPrice          string `xml:"spotPrice"`
	Timestamp          string `xml:"timestamp"`
	AvailabilityZone   string `xml:"availabilityZone"`
}

type xmlResponse struct {
	XMLName   xml.Name       `xml:"DescribeSpotPriceHistoryResponse"`
	Xmlns     string         `xml:"xmlns,attr"`
	RequestID string         `xml:"requestId"`
	Items     []xmlSpotPrice `xml:"spotPriceHistorySet>item"`
	NextToken string         `xml:"nextToken,omitempty"`
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if got := r.PostForm.Get("Action"); got != "DescribeSpotPriceHistory" {
		http.Error(w, "unexpected action "+got, http.StatusBadRequest)
		return
	}
	m := credentialRegion.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		http.Error(w, "request is not SigV4-signed", http.StatusForbidden)
		return
	}
	region := m[1]
	if f.failWith != "" {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>not allowed in %s</Message></Error></Errors><RequestID>req-1</RequestID></Response>`, f.failWith, region)
		return
	}
	var want []string
	for i := 1; ; i++ {
		v := r.PostForm.Get("InstanceType." + strconv.Itoa(i))
		if v == "" {
			break
		}
		want = append(want, v)
	}
	if pd := r.PostForm.Get("ProductDescription.1"); pd != "Linux/UNIX" {
		http.Error(w, "unexpected product description "+pd, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls++
	if f.askedFor == nil {
		f.askedFor = map[string][]string{}
	}
	f.askedFor[region] = want
	f.mu.Unlock()

	var items []xmlSpotPrice
	for _, p := range f.history[region] {
		if len(want) > 0 && !slices.Contains(want, p.instanceType) {
			continue
		}
		items = append(items, xmlSpotPrice{p.instanceType, "Linux/UNIX", p.price, p.at.UTC().Format("2006-01-02T15:04:05.000Z"), p.az})
	}
	start := 0
	if tok := r.PostForm.Get("NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "page-"))
		if err != nil || n > len(items) {
			http.Error(w, "bad token", http.StatusBadRequest)
			return
		}
		start = n
	}
	end := min(start+f.pageSize, len(items))
	resp := xmlResponse{Xmlns: "http://ec2.amazonaws.com/doc/2016-11-15/", RequestID: "req-1", Items: items[start:end]}
	if end < len(items) {
		resp.NextToken = "page-" + strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_ = xml.NewEncoder(w).Encode(resp)
}

func pricesFor(t *testing.T, f *fakeEC2) *EC2Prices {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
		HTTPClient:   srv.Client(),
	}
	p := NewEC2Prices(cfg)
	p.Now = func() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }
	return p
}

var t0 = time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)

func history() map[string][]fakePrice {
	return map[string][]fakePrice{
		"us-east-1": {
			{"us-east-1a", "g4dn.xlarge", "0.2600", t0},
			{"us-east-1b", "g4dn.xlarge", "0.2400", t0},
			{"us-east-1a", "g5.xlarge", "0.4100", t0},
			{"us-east-1a", "g6.xlarge", "0.3900", t0},
			{"us-east-1a", "p3.2xlarge", "0.9500", t0},
		},
		"us-west-2": {
			// An older, cheaper price for the same zone and type must lose to
			// the newer one.
			{"us-west-2a", "g4dn.xlarge", "0.1000", t0.Add(-3 * time.Hour)},
			{"us-west-2a", "g4dn.xlarge", "0.2500", t0},
			{"us-west-2b", "g5.xlarge", "0.4500", t0},
			{"us-west-2b", "g6.xlarge", "0.3700", t0},
			// Last page: the cheapest 16 GB offer of all.
			{"us-west-2c", "g4dn.2xlarge", "0.2200", t0},
		},
	}
}

func TestLatestKeepsNewestPricePerZoneAcrossPages(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 2}
	p := pricesFor(t, f)
	got, err := p.Latest(context.Background(), "us-west-2", []string{"g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g6.xlarge"})
	if err != nil {
		t.Fatal(err)
	}
	if f.calls != 3 {
		t.Errorf("5 items at 2 a page should take 3 calls, server saw %d", f.calls)
	}
	want := []SpotPrice{
		{"us-west-2c", "g4dn.2xlarge", 0.22},
		{"us-west-2a", "g4dn.xlarge", 0.25},
		{"us-west-2b", "g5.xlarge", 0.45},
		{"us-west-2b", "g6.xlarge", 0.37},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Latest = %+v\nwant %+v", got, want)
	}
}

func TestSelectCheapestSpotAcrossRegions(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 2}
	p := pricesFor(t, f)
	req := Request{GPUMemoryGB: 16, MaxPricePerHour: 1.0, Regions: []string{"us-east-1", "us-west-2"}}
	got, err := Select(context.Background(), req, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "g4dn.2xlarge" || got.Region != "us-west-2" || got.AvailabilityZone != "us-west-2c" || got.Market != Spot || got.PricePerHour != 0.22 {
		t.Errorf("Select = %+v, want g4dn.2xlarge spot in us-west-2c at 0.22", got)
	}
	if got.GPUModel != "NVIDIA T4" || got.GPUMemoryGB != 16 {
		t.Errorf("offer lost its catalogue entry: %+v", got.InstanceType)
	}
}

func TestOffersAreSortedAndWithinBudget(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 3}
	p := pricesFor(t, f)
	req := Request{GPUMemoryGB: 24, MaxPricePerHour: 0.44, Regions: []string{"us-east-1", "us-west-2"}}
	offers, err := Offers(context.Background(), req, p)
	if err != nil {
		t.Fatal(err)
	}
	if !sort.SliceIsSorted(offers, func(i, j int) bool { return less(offers[i], offers[j]) }) {
		t.Errorf("offers not sorted: %+v", offers)
	}
	for _, o := range offers {
		if o.GPUMemoryGB < 24 || o.PricePerHour > 0.44 || o.Market != Spot {
			t.Errorf("ineligible offer %+v", o)
		}
	}
	// g5.xlarge in us-west-2 costs 0.45 and must be out; g6 (both regions)
	// and g5 in us-east-1 are in.
	if len(offers) != 3 {
		t.Errorf("got %d offers, want 3: %+v", len(offers), offers)
	}
	// Types too small for the request must not even be asked about.
	for region, asked := range f.askedFor {
		for _, it := range asked {
			entry, err := Lookup(it)
			if err != nil || entry.GPUMemoryGB < 24 {
				t.Errorf("asked %s about %s, which cannot hold 24 GB", region, it)
			}
		}
	}
}

func TestOnDemandFallbackWhereNoSpotPrice(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 2}
	p := pricesFor(t, f)
	req := Request{GPUMemoryGB: 24, GPUCount: 1, MaxPricePerHour: 5, Regions: []string{"eu-west-1"}, AllowOnDemand: true}
	got, err := Select(context.Background(), req, p)
	if err != nil {
		t.Fatal(err)
	}
	var cheapest InstanceType
	for _, it := range Catalogue() {
		if it.GPUMemoryGB >= 24 && (cheapest.Name == "" || it.OnDemandPerHour < cheapest.OnDemandPerHour) {
			cheapest = it
		}
	}
	if got.Market != OnDemand || got.Name != cheapest.Name || got.PricePerHour != cheapest.OnDemandPerHour || got.Region != "eu-west-1" {
		t.Errorf("Select = %+v, want on-demand %s at %g in eu-west-1", got, cheapest.Name, cheapest.OnDemandPerHour)
	}

	req.AllowOnDemand = false
	_, err = Select(context.Background(), req, p)
	var none *NoOfferError
	if !errors.As(err, &none) {
		t.Fatalf("without on-demand, err = %v, want NoOfferError", err)
	}
	if !strings.Contains(err.Error(), "g6.xlarge in eu-west-1: no spot price") || !strings.Contains(err.Error(), "allow_on_demand: false") {
		t.Errorf("error does not say why:\n%v", err)
	}
}

func TestNoOfferExplainsEveryExclusion(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 2}
	p := pricesFor(t, f)

	_, err := Select(context.Background(), Request{GPUMemoryGB: 100, MaxPricePerHour: 200, Regions: []string{"us-east-1"}}, p)
	var none *NoOfferError
	if !errors.As(err, &none) {
		t.Fatalf("err = %v, want NoOfferError", err)
	}
	if len(none.Reasons) != len(Catalogue()) {
		t.Errorf("want one reason per catalogue entry, got %d:\n%v", len(none.Reasons), err)
	}
	if !strings.Contains(err.Error(), "p5.48xlarge: 80 GB per GPU < 100 GB requested") {
		t.Errorf("error does not name the biggest GPU's shortfall:\n%v", err)
	}
	if f.calls != 0 {
		t.Errorf("asked EC2 %d times although no type could fit", f.calls)
	}

	_, err = Select(context.Background(), Request{GPUMemoryGB: 16, MaxPricePerHour: 0.2, Regions: []string{"us-east-1"}}, p)
	if !errors.As(err, &none) || !strings.Contains(err.Error(), "g4dn.xlarge in us-east-1b: spot $0.2400/h > max $0.2000/h") {
		t.Errorf("over-budget error does not say so:\n%v", err)
	}
	_, err = Select(context.Background(), Request{GPUMemoryGB: 16, GPUCount: 16, MaxPricePerHour: 200, Regions: []string{"us-east-1"}}, p)
	if !errors.As(err, &none) || !strings.Contains(err.Error(), "p3.16xlarge: 8 GPUs < 16 requested") {
		t.Errorf("gpu-count error does not say so:\n%v", err)
	}
}

func TestEC2ErrorNamesRegionAndCode(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 2, failWith: "UnauthorizedOperation"}
	p := pricesFor(t, f)
	_, err := Select(context.Background(), Request{GPUMemoryGB: 16, MaxPricePerHour: 1, Regions: []string{"ap-south-1"}}, p)
	if err == nil || !strings.Contains(err.Error(), "ap-south-1") || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Errorf("err = %v, want region and EC2 error code", err)
	}
}

func TestBadRequestsAreRejectedBeforeAnyCall(t *testing.T) {
	f := &fakeEC2{history: history(), pageSize: 2}
	p := pricesFor(t, f)
	for _, req := range []Request{
		{GPUMemoryGB: 16, Regions: []string{"us-east-1"}},
		{GPUMemoryGB: 16, MaxPricePerHour: 1},
		{GPUMemoryGB: -1, MaxPricePerHour: 1, Regions: []string{"us-east-1"}},
		{GPUCount: -2, MaxPricePerHour: 1, Regions: []string{"us-east-1"}},
		{MaxPricePerHour: 1, Regions: []string{" "}},
	} {
		if _, err := Select(context.Background(), req, p); err == nil {
			t.Errorf("Select(%+v) accepted a bad request", req)
		}
	}
	if f.calls != 0 {
		t.Errorf("bad requests reached EC2 %d times", f.calls)
	}
}

// stubPrices serves fixed prices without any API, for ordering rules.
type stubPrices map[string][]SpotPrice

func (s stubPrices) Latest(_ context.Context, region string, _ []string) ([]SpotPrice, error) {
	return s[region], nil
}

func TestTiesBreakDeterministically(t *testing.T) {
	g4, err := Lookup("g4dn.xlarge")
	if err != nil {
		t.Fatal(err)
	}
	prices := stubPrices{
		"us-west-2": {{"us-west-2b", "g4dn.xlarge", 0.3}, {"us-west-2a", "g4dn.xlarge", 0.3}},
		"us-east-1": {{"us-east-1c", "g4dn.xlarge", 0.3}},
		// Spot here equals the on-demand price of a type with no spot price.
		"eu-west-1": {{"eu-west-1a", "g4dn.2xlarge", g4.OnDemandPerHour}},
	}
	req := Request{GPUMemoryGB: 16, MaxPricePerHour: 0.6, Regions: []string{"us-west-2", "us-east-1", "eu-west-1"}, AllowOnDemand: true}
	offers, err := Offers(context.Background(), req, prices)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range offers {
		got = append(got, fmt.Sprintf("%s/%s/%s/%s", o.Name, o.Region, o.AvailabilityZone, o.Market))
	}
	want := []string{
		"g4dn.xlarge/us-east-1/us-east-1c/spot",
		"g4dn.xlarge/us-west-2/us-west-2a/spot",
		"g4dn.xlarge/us-west-2/us-west-2b/spot",
		"g4dn.2xlarge/eu-west-1/eu-west-1a/spot",
		"g4dn.xlarge/eu-west-1//on-demand",
	}
	if !slices.Equal(got, want) {
		t.Errorf("order:\n got %q\nwant %q", got, want)
	}
}
