package tf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
)

// ErrBadStore marks a store URL StoreBackend cannot keep state under.
var ErrBadStore = errors.New("store cannot hold terraform state")

// StoreBackend is the S3 backend configuration that keeps a node's state
// in the fleet's artifact store when that is an S3 bucket: the store's
// bucket, the key <prefix>/terraform/<name>.tfstate under the store's
// prefix, and the store's region and endpoint (from the URL's query, else
// the AWS_* environment the SDK reads too). Any worker that shares the
// store can then destroy the node. It returns nil for a store that is not
// s3://: a file:// store lives on one host, where local state is as
// reachable as the store. bin is the Terraform that will use it, since
// 1.6 and later must be told not to ask AWS for the account (an
// S3-compatible store has none) and 1.5 refuses that setting.
func StoreBackend(bin, store, name string) (map[string]string, error) {
	if !strings.HasPrefix(store, "s3://") {
		return nil, nil
	}
	u, err := url.Parse(store)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("terraform state in the store: %s is not s3://bucket/prefix: %w", redactQuery(store), ErrBadStore)
	}
	if strings.ContainsAny(name, "/\\") || name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("terraform state in the store: state name %q must be one path segment: %w", name, ErrBadStore)
	}
	q := u.Query()
	cfg := map[string]string{
		"bucket": u.Host,
		"key":    path.Join(strings.Trim(u.Path, "/"), "terraform", name+".tfstate"),
	}
	region := firstOf(q.Get("region"), os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	if region == "" {
		return nil, fmt.Errorf("terraform state in the store %s: no region (?region= or AWS_REGION): %w", redactQuery(store), ErrBadStore)
	}
	cfg["region"] = region
	if endpoint := firstOf(q.Get("endpoint"), os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL")); endpoint != "" {
		// An S3-compatible server: path-style addressing, and none of
		// the AWS account, region or metadata lookups it cannot answer.
		cfg["endpoint"] = endpoint
		cfg["force_path_style"] = "true"
		cfg["skip_credentials_validation"] = "true"
		cfg["skip_region_validation"] = "true"
		cfg["skip_metadata_api_check"] = "true"
		newer, err := AtLeast(bin, 1, 6)
		if err != nil {
			return nil, err
		}
		if newer {
			cfg["skip_requesting_account_id"] = "true"
		}
	}
	return cfg, nil
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func redactQuery(s string) string {
	s, _, _ = strings.Cut(s, "?")
	return s
}

var versions sync.Map // binary path -> [2]int

// AtLeast reports whether the Terraform (or OpenTofu) at bin is version
// major.minor or later, asking it once per binary.
func AtLeast(bin string, major, minor int) (bool, error) {
	v, ok := versions.Load(bin)
	if !ok {
		cmd := exec.Command(bin, "version", "-json")
		cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE="+os.DevNull)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return false, fmt.Errorf("%s version -json: %w: %s", bin, err, bytes.TrimSpace(stderr.Bytes()))
		}
		var got struct {
			Version string `json:"terraform_version"`
		}
		var mv [2]int
		if err := json.Unmarshal(out, &got); err != nil {
			return false, fmt.Errorf("%s version -json: %w", bin, err)
		}
		if _, err := fmt.Sscanf(got.Version, "%d.%d", &mv[0], &mv[1]); err != nil {
			return false, fmt.Errorf("%s version -json: version %q: %w", bin, got.Version, err)
		}
		v, _ = versions.LoadOrStore(bin, mv)
	}
	mv := v.([2]int)
	return mv[0] > major || mv[0] == major && mv[1] >= minor, nil
}
