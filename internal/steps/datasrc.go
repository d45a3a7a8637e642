package steps

import "context"

// localData makes a data input readable on this host: a path as given, a
// file:// URL, an s3:// object, an http(s):// URL or an artifact pointer
// (what split writes) through the worker's store and cache, verified on
// the way; a builtin: URI as given.
func localData(ctx context.Context, env Env, key, src string) (string, error) {
	data, err := env.Artifacts().Data(ctx, src)
	if err != nil {
		return "", artifactErr(key, err)
	}
	return data.Path, nil
}
