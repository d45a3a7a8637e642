package artifact

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultLocation is where artifacts go when no location is configured.
const DefaultLocation = ".gauntlet/artifacts"

// Open returns the store at location:
//
//	""                        DefaultLocation, relative to the working directory
//	/abs/path, rel/path       a local directory
//	file:///abs/path          a local directory
//	s3://bucket/prefix?region=R&endpoint=URL&max_attempts=N
//
// For s3, region defaults to the SDK's configuration; endpoint points at an
// S3-compatible store and switches to path-style addressing; max_attempts
// caps the SDK's own retries (1 leaves retrying to the caller, e.g. Temporal).
// Credentials come only from the SDK's default chain (environment, shared
// files, IMDS, ...): a location that carries any is refused, so secrets never
// end up in pipeline specs or workflow histories.
func Open(ctx context.Context, location string) (Store, error) {
	if location == "" {
		location = DefaultLocation
	}
	if !strings.Contains(location, "://") {
		return openFileStore(location)
	}
	u, err := url.Parse(location)
	if err != nil {
		// url.Error quotes the whole input, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("artifact: open: malformed location URL: %w", err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("artifact: open %s://%s: credentials in the URL are refused; use the AWS SDK's default credential chain", u.Scheme, u.Host)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" || u.RawQuery != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("artifact: open %q: want file:///absolute/path", location)
		}
		return openFileStore(u.Path)
	case "s3":
		return openS3Store(ctx, u)
	default:
		return nil, fmt.Errorf("artifact: open %q: unsupported scheme %q (want file or s3)", location, u.Scheme)
	}
}

func openS3Store(ctx context.Context, u *url.URL) (*s3Store, error) {
	// Errors name the location without its query: whatever someone wrongly
	// put there may be a secret.
	loc := "s3://" + u.Host + u.Path
	if u.Host == "" {
		return nil, fmt.Errorf("artifact: open %q: missing bucket", loc)
	}
	var loadOpts []func(*config.LoadOptions) error
	var endpoint string
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return nil, fmt.Errorf("artifact: open %q: parameter %q given %d times", loc, key, len(vals))
		}
		v := vals[0]
		switch key {
		case "region":
			loadOpts = append(loadOpts, config.WithRegion(v))
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil {
				return nil, fmt.Errorf("artifact: open %q: endpoint must be an http(s) URL without credentials", loc)
			}
			endpoint = v
		case "max_attempts":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("artifact: open %q: max_attempts must be a positive integer", loc)
			}
			loadOpts = append(loadOpts, config.WithRetryMaxAttempts(n))
		default:
			return nil, fmt.Errorf("artifact: open %q: unknown parameter %q (want region, endpoint, max_attempts)", loc, key)
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("artifact: open %s: load AWS config: %w", loc, err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("artifact: open %s: no region: set ?region= or AWS_REGION", loc)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// Get verifies every blob against its SHA-256 name itself; the SDK's
		// own response check would fail first on corruption with an
		// unexported error type that callers cannot tell from a network fault.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
	})
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &s3Store{client: client, bucket: u.Host, prefix: prefix}, nil
}
