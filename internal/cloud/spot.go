package cloud

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// productDescription restricts prices to Linux in a VPC, which is what the
// aws-spot-gpu module launches; Windows and SUSE spot prices differ.
const productDescription = "Linux/UNIX"

// EC2Prices reads spot prices with the EC2 DescribeSpotPriceHistory API.
type EC2Prices struct {
	// Client returns the EC2 client for a region.
	Client func(region string) ec2.DescribeSpotPriceHistoryAPIClient
	// Now is the clock; the API returns, for each zone and type, the last
	// price set at or before StartTime, so asking from "now" gives current
	// prices without paging through history.
	Now func() time.Time
}

// NewEC2Prices builds per-region clients from one AWS config (from
// config.LoadDefaultConfig in production, a static one in tests).
func NewEC2Prices(cfg aws.Config) *EC2Prices {
	return &EC2Prices{
		Client: func(region string) ec2.DescribeSpotPriceHistoryAPIClient {
			return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.Region = region })
		},
		Now: time.Now,
	}
}

// Latest returns the newest price per zone and instance type in region.
func (p *EC2Prices) Latest(ctx context.Context, region string, instanceTypes []string) ([]SpotPrice, error) {
	if len(instanceTypes) == 0 {
		return nil, nil
	}
	its := make([]types.InstanceType, len(instanceTypes))
	for i, n := range instanceTypes {
		its[i] = types.InstanceType(n)
	}
	now := p.Now()
	in := &ec2.DescribeSpotPriceHistoryInput{
		InstanceTypes:       its,
		ProductDescriptions: []string{productDescription},
		StartTime:           &now,
	}
	type key struct{ az, it string }
	type seen struct {
		price float64
		at    time.Time
	}
	latest := map[key]seen{}
	pages := ec2.NewDescribeSpotPriceHistoryPaginator(p.Client(region), in)
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("DescribeSpotPriceHistory: %w", err)
		}
		for _, sp := range out.SpotPriceHistory {
			az := aws.ToString(sp.AvailabilityZone)
			raw := aws.ToString(sp.SpotPrice)
			price, err := strconv.ParseFloat(raw, 64)
			if err != nil || price < 0 {
				return nil, fmt.Errorf("DescribeSpotPriceHistory: bad price %q for %s in %s", raw, sp.InstanceType, az)
			}
			k := key{az, string(sp.InstanceType)}
			at := aws.ToTime(sp.Timestamp)
			if cur, ok := latest[k]; ok && !at.After(cur.at) {
				continue
			}
			latest[k] = seen{price, at}
		}
	}
	out := make([]SpotPrice, 0, len(latest))
	for k, v := range latest {
		out = append(out, SpotPrice{AvailabilityZone: k.az, InstanceType: k.it, PricePerHour: v.price})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].InstanceType != out[j].InstanceType {
			return out[i].InstanceType < out[j].InstanceType
		}
		return out[i].AvailabilityZone < out[j].AvailabilityZone
	})
	return out, nil
}
