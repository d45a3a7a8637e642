package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/gauntlet-ml/gauntlet/internal/cloud"
)

// offerVars are the module variables a chosen offer sets; a cloud module
// takes them from provision, never from `vars`, so the recorded price is
// the price of what runs.
var offerVars = []string{"region", "instance_types", "availability_zone", "max_price_per_hour"}

// offerRecord is one priced place a node can run, as node.json keeps it.
type offerRecord struct {
	InstanceType     string  `json:"instance_type"`
	GPUModel         string  `json:"gpu_model"`
	GPUCount         int     `json:"gpu_count"`
	GPUMemoryGB      float64 `json:"gpu_memory_gb"`
	Region           string  `json:"region"`
	AvailabilityZone string  `json:"availability_zone,omitempty"`
	Market           string  `json:"market"`
	PricePerHour     float64 `json:"price_per_hour"`
	MaxPricePerHour  float64 `json:"max_price_per_hour"`
}

func (o offerRecord) describe() string {
	where := o.Region
	if o.AvailabilityZone != "" {
		where = o.AvailabilityZone
	}
	return fmt.Sprintf("%d × %s (%g GB) on %s, %s in %s", o.GPUCount, o.GPUModel, o.GPUMemoryGB, o.InstanceType, o.Market, where)
}

// spotPrices is where live spot prices come from; tests replace it, as
// nothing here can reach EC2.
var spotPrices = func(ctx context.Context) (cloud.SpotPrices, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return cloud.NewEC2Prices(cfg), nil
}

func checkInstanceTypes(names []string) error {
	for _, n := range names {
		if _, err := cloud.Lookup(n); err != nil {
			return badInput("instance_types", "%v", err)
		}
	}
	return nil
}

// selectOffers ranks the offers meeting req and keeps, for the cheapest
// offer's region, the cheapest offer of each instance type. Fallbacks stay
// in one region because the module's provider is bound to it: moving
// region would orphan what the failed apply created.
func selectOffers(ctx context.Context, req nodeRequest) ([]offerRecord, error) {
	prices, err := spotPrices(ctx)
	if err != nil {
		return nil, fmt.Errorf("provision: spot prices: %w", err)
	}
	offers, err := cloud.Offers(ctx, cloud.Request{GPUMemoryGB: req.GPUMemoryGB, GPUCount: req.GPUCount,
		MaxPricePerHour: req.MaxPricePerHour, Regions: req.Regions, AllowOnDemand: req.AllowOnDemand}, prices)
	var noOffer *cloud.NoOfferError
	if errors.As(err, &noOffer) {
		return nil, &Error{Kind: kindNoOffer, Retryable: true, Err: fmt.Errorf("provision: %w", err)}
	}
	if err != nil {
		return nil, fmt.Errorf("provision: choosing a GPU offer: %w", err)
	}
	if len(req.InstanceTypes) > 0 {
		offers = slices.DeleteFunc(offers, func(o cloud.Offer) bool { return !slices.Contains(req.InstanceTypes, o.Name) })
		if len(offers) == 0 {
			return nil, &Error{Kind: kindNoOffer, Retryable: true,
				Err: fmt.Errorf("provision: no eligible GPU offer among instance_types %v (other types meet the request)", req.InstanceTypes)}
		}
	}
	region := offers[0].Region
	var out []offerRecord
	for _, o := range offers {
		if o.Region != region || slices.ContainsFunc(out, func(r offerRecord) bool { return r.InstanceType == o.Name }) {
			continue
		}
		out = append(out, offerRecord{InstanceType: o.Name, GPUModel: o.GPUModel, GPUCount: o.GPUCount, GPUMemoryGB: o.GPUMemoryGB,
			Region: o.Region, AvailabilityZone: o.AvailabilityZone, Market: string(o.Market), PricePerHour: o.PricePerHour,
			MaxPricePerHour: req.MaxPricePerHour})
	}
	return out, nil
}

// offerModuleVars are the variables of the first offer still to try. The
// module launches instance_types[0]; the rest document the fallbacks.
func offerModuleVars(rec *nodeRecord) map[string]any {
	first := rec.Offers[0]
	types := make([]string, len(rec.Offers))
	for i, o := range rec.Offers {
		types[i] = o.InstanceType
	}
	return map[string]any{
		"region":             first.Region,
		"instance_types":     types,
		"availability_zone":  first.AvailabilityZone,
		"max_price_per_hour": first.MaxPricePerHour,
		"gpu_description":    first.describe(),
	}
}
