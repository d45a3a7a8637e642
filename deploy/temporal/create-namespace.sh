#!/bin/sh
# Creates the namespace and Gauntlet's search attributes (internal/searchattr)
# once; later runs find them and change nothing.
set -eu
ns=${DEFAULT_NAMESPACE:-default}
temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$ns" --retention "${NAMESPACE_RETENTION:-720h}"
have=$(temporal operator search-attribute list --namespace "$ns")
for name in GauntletPipeline GauntletStatus GauntletModelVersion GauntletSpecHash GauntletApproval; do
  echo "$have" | grep -q "$name" \
    || temporal operator search-attribute create --namespace "$ns" --name "$name" --type Keyword
done
echo "namespace $ns is ready"
