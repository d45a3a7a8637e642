package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
// Without endpoint, the SDK's own AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL
// from the environment is used, also path-style: S3-compatible servers
// rarely have a DNS name per bucket.
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
	client, err := newS3Client(ctx, loc, u.Query())
	if err != nil {
		return nil, err
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &s3Store{client: client, bucket: u.Host, prefix: prefix}, nil
}

// endpointEnv are the AWS SDK's endpoint overrides, service-specific first.
var endpointEnv = []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}

// newS3Client builds a client from the SDK's default configuration and
// the parameters of an s3:// URL; loc names the URL in errors.
func newS3Client(ctx context.Context, loc string, q url.Values) (*s3.Client, error) {
	var loadOpts []func(*config.LoadOptions) error
	var endpoint string
	for _, key := range slices.Sorted(maps.Keys(q)) {
		vals := q[key]
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
	// The SDK reads the endpoint variables itself; path-style addressing
	// is ours to switch on when one is set.
	pathStyle := endpoint != ""
	for _, name := range endpointEnv {
		pathStyle = pathStyle || os.Getenv(name) != ""
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		// Get verifies every blob against its SHA-256 name itself; the SDK's
		// own response check would fail first on corruption with an
		// unexported error type that callers cannot tell from a network fault.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = pathStyle
	}), nil
}

// OpenS3Object opens the object an s3://bucket/key URL names, with the
// same client settings a store gets (the SDK's credential chain, the
// endpoint from the environment or ?endpoint=). It is how data outside
// the store is read. Errors name the URL without its query.
func OpenS3Object(ctx context.Context, rawURL string) (io.ReadCloser, int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" {
		return nil, 0, fmt.Errorf("artifact: %s: want s3://bucket/key", shown(rawURL))
	}
	if u.User != nil {
		return nil, 0, fmt.Errorf("artifact: s3://%s%s: credentials in the URL are refused; use the AWS SDK's default credential chain", u.Host, u.Path)
	}
	loc := "s3://" + u.Host + u.Path
	key := strings.TrimPrefix(u.Path, "/")
	if u.Host == "" || key == "" || strings.HasSuffix(key, "/") {
		return nil, 0, fmt.Errorf("artifact: %s: want s3://bucket/key of one object", loc)
	}
	client, err := newS3Client(ctx, loc, u.Query())
	if err != nil {
		return nil, 0, err
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Host), Key: aws.String(key)})
	if err != nil {
		return nil, 0, fmt.Errorf("artifact: get %s: %w", loc, s3NotFound(err))
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}
