package cloud

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Request is what a provision step asks of a GPU node.
type Request struct {
	// GPUMemoryGB is the least memory each GPU must have.
	GPUMemoryGB float64 `json:"gpu_memory_gb"`
	// GPUCount is the least number of GPUs; zero means one.
	GPUCount int `json:"gpu_count"`
	// MaxPricePerHour caps the hourly price in USD; it also becomes the spot
	// max price of the launch template, so it is required.
	MaxPricePerHour float64  `json:"max_price_per_hour"`
	Regions         []string `json:"regions"`
	// AllowOnDemand lets the catalogue's on-demand price stand in where spot
	// capacity is missing or dearer.
	AllowOnDemand bool `json:"allow_on_demand"`
}

// Market is how an offer is bought.
type Market string

// The two markets an offer can come from.
const (
	Spot     Market = "spot"
	OnDemand Market = "on-demand"
)

// Offer is one place a node could run and what it would cost.
type Offer struct {
	InstanceType
	Region string
	// AvailabilityZone is empty for on-demand offers: any zone of the region
	// sells on-demand at the same price.
	AvailabilityZone string
	Market           Market
	PricePerHour     float64
}

// SpotPrice is the latest spot price of one instance type in one zone.
type SpotPrice struct {
	AvailabilityZone string
	InstanceType     string
	PricePerHour     float64
}

// SpotPrices reports current spot prices; EC2Prices is the real one.
type SpotPrices interface {
	Latest(ctx context.Context, region string, instanceTypes []string) ([]SpotPrice, error)
}

// NoOfferError says why no offer met a request, one reason per line.
type NoOfferError struct {
	Reasons []string
}

func (e *NoOfferError) Error() string {
	return "no eligible GPU offer:\n  " + strings.Join(e.Reasons, "\n  ")
}

func (r Request) validate() error {
	var errs []error
	if r.GPUMemoryGB < 0 {
		errs = append(errs, fmt.Errorf("gpu_memory_gb must not be negative, got %g", r.GPUMemoryGB))
	}
	if r.GPUCount < 0 {
		errs = append(errs, fmt.Errorf("gpu_count must not be negative, got %d", r.GPUCount))
	}
	if !(r.MaxPricePerHour > 0) {
		errs = append(errs, fmt.Errorf("max_price_per_hour must be positive, got %g", r.MaxPricePerHour))
	}
	if len(r.Regions) == 0 {
		errs = append(errs, errors.New("regions must name at least one region"))
	}
	for _, reg := range r.Regions {
		if strings.TrimSpace(reg) == "" {
			errs = append(errs, errors.New("regions must not contain an empty name"))
			break
		}
	}
	return errors.Join(errs...)
}

// Offers returns every offer that meets the request, cheapest first. Ties
// break on spot before on-demand, then instance type, region and zone, so the
// same prices always give the same order. The caller launches the first and
// can fall back on the next when the cloud reports no capacity.
func Offers(ctx context.Context, req Request, prices SpotPrices) ([]Offer, error) {
	if err := req.validate(); err != nil {
		return nil, fmt.Errorf("gpu request: %w", err)
	}
	want := req.GPUCount
	if want == 0 {
		want = 1
	}
	var reasons []string
	var fits []InstanceType
	for _, it := range Catalogue() {
		switch {
		case it.GPUMemoryGB < req.GPUMemoryGB:
			reasons = append(reasons, fmt.Sprintf("%s: %g GB per GPU < %g GB requested", it.Name, it.GPUMemoryGB, req.GPUMemoryGB))
		case it.GPUCount < want:
			reasons = append(reasons, fmt.Sprintf("%s: %d GPUs < %d requested", it.Name, it.GPUCount, want))
		default:
			fits = append(fits, it)
		}
	}
	if len(fits) == 0 {
		return nil, &NoOfferError{Reasons: reasons}
	}
	names := make([]string, len(fits))
	for i, it := range fits {
		names[i] = it.Name
	}

	var offers []Offer
	for _, region := range req.Regions {
		spot, err := prices.Latest(ctx, region, names)
		if err != nil {
			return nil, fmt.Errorf("spot prices in %s: %w", region, err)
		}
		byType := map[string][]SpotPrice{}
		for _, p := range spot {
			byType[p.InstanceType] = append(byType[p.InstanceType], p)
		}
		for _, it := range fits {
			found := false
			for _, p := range byType[it.Name] {
				if p.PricePerHour > req.MaxPricePerHour {
					reasons = append(reasons, fmt.Sprintf("%s in %s: spot $%.4f/h > max $%.4f/h", it.Name, p.AvailabilityZone, p.PricePerHour, req.MaxPricePerHour))
					continue
				}
				found = true
				offers = append(offers, Offer{InstanceType: it, Region: region, AvailabilityZone: p.AvailabilityZone, Market: Spot, PricePerHour: p.PricePerHour})
			}
			if len(byType[it.Name]) == 0 {
				reasons = append(reasons, fmt.Sprintf("%s in %s: no spot price (not offered there)", it.Name, region))
			}
			if found || !req.AllowOnDemand {
				continue
			}
			if it.OnDemandPerHour > req.MaxPricePerHour {
				reasons = append(reasons, fmt.Sprintf("%s in %s: on-demand $%.4f/h > max $%.4f/h", it.Name, region, it.OnDemandPerHour, req.MaxPricePerHour))
				continue
			}
			offers = append(offers, Offer{InstanceType: it, Region: region, Market: OnDemand, PricePerHour: it.OnDemandPerHour})
		}
	}
	if len(offers) == 0 {
		if !req.AllowOnDemand {
			reasons = append(reasons, "on-demand fallback not allowed (allow_on_demand: false)")
		}
		return nil, &NoOfferError{Reasons: reasons}
	}
	sort.Slice(offers, func(i, j int) bool { return less(offers[i], offers[j]) })
	return offers, nil
}

// Select returns the cheapest offer that meets the request.
func Select(ctx context.Context, req Request, prices SpotPrices) (Offer, error) {
	offers, err := Offers(ctx, req, prices)
	if err != nil {
		return Offer{}, err
	}
	return offers[0], nil
}

func less(a, b Offer) bool {
	if a.PricePerHour != b.PricePerHour {
		return a.PricePerHour < b.PricePerHour
	}
	if a.Market != b.Market {
		return a.Market == Spot
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	if a.Region != b.Region {
		return a.Region < b.Region
	}
	return a.AvailabilityZone < b.AvailabilityZone
}
