package contract

import "strings"

// ArtifactDigest is the content digest an artifact pointer names
// ("sha256:<hex>" from STORE/trees/sha256/<hex> or STORE/blobs/sha256/<hex>,
// package artifact's text form, which a test keeps in step with this), or
// "" when ref is not a pointer. Workflow code compares artifacts by it
// without importing the store.
func ArtifactDigest(ref string) string {
	i := strings.LastIndex(ref, "/sha256/")
	if i < 0 {
		return ""
	}
	if kind := ref[:i]; !strings.HasSuffix(kind, "/trees") && !strings.HasSuffix(kind, "/blobs") {
		return ""
	}
	hex := ref[i+len("/sha256/"):]
	if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return ""
	}
	return "sha256:" + hex
}

// ArtifactIdentity is what binds an approval to an artifact: its content
// digest when ref is an artifact pointer, else ref as written (a step under
// test may name a model by path).
func ArtifactIdentity(ref string) string {
	if d := ArtifactDigest(ref); d != "" {
		return d
	}
	return ref
}
