#!/usr/bin/env bash
# End-to-end test on a local kind cluster. Needs Docker, kind, kubectl and helm, so it does
# NOT run in CI (no container runtime on the CI machines); run it on a workstation.
#
# What it shows that the mocked tests cannot: the CRD installs and validates, the operator
# creates the StatefulSet/Service/Secret/PDB through real server-side apply, owner references
# garbage-collect on delete, `kubectl scale` drives the scale subresource, and the gateway
# discovers the sidecars through real EndpointSlices.
#
# Lingma needs real accounts to log in. Without LINGMA_ACCOUNTS_FILE the script checks
# everything up to login (pods start, status conditions appear with a login reason).
#
#   LINGMA_ACCOUNTS_FILE=./accounts.csv scripts/e2e-kind.sh
#   KEEP_CLUSTER=1 scripts/e2e-kind.sh    # leave the cluster for inspection
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-lingma-e2e}
NS=lingma
TAG=e2e
TIMEOUT=${TIMEOUT:-600s}

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

cleanup() {
  if [ -z "${KEEP_CLUSTER:-}" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "==> images"
for image in operator gateway lingma-pod; do
  docker build -q -f "docker/$image.Dockerfile" -t "local/$image:$TAG" .
done

echo "==> kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
for image in operator gateway lingma-pod; do
  kind load docker-image --name "$CLUSTER" "local/$image:$TAG"
done

echo "==> chart (--wait turns healthy with no LingmaInstance: readiness = serving + discovery synced)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
images=()
for key in operator gateway lingmaPod; do
  repo=local/$(echo "$key" | sed 's/lingmaPod/lingma-pod/')
  images+=(--set "images.$key.repository=$repo" --set "images.$key.tag=$TAG")
done
helm upgrade --install lingma-gateway charts/lingma-gateway -n "$NS" --wait --timeout "$TIMEOUT" \
  "${images[@]}" --set imagePullPolicy=Never --set gateway.auth.apiKeys=e2e-key
kubectl -n "$NS" rollout status deploy/lingma-gateway-operator --timeout "$TIMEOUT"
kubectl -n "$NS" rollout status deploy/lingma-gateway-gateway --timeout "$TIMEOUT"
# The test Pod pulls its curl image from docker.io (images.test).
helm test lingma-gateway -n "$NS" --timeout 120s

echo "==> no capacity is a JSON 503, not a connection error"
kubectl -n "$NS" port-forward svc/lingma-gateway-gateway 18317:8317 >/dev/null &
pf=$!
trap 'kill $pf 2>/dev/null; cleanup' EXIT
for _ in $(seq 30); do curl -fsS localhost:18317/healthz >/dev/null 2>&1 && break; sleep 1; done
code=$(curl -s -o /tmp/lingma-e2e-503.json -w '%{http_code}' localhost:18317/v1/chat/completions \
  -H 'Authorization: Bearer e2e-key' -H 'Content-Type: application/json' \
  -d '{"model":"org_auto","messages":[{"role":"user","content":"hi"}]}')
[ "$code" = 503 ] && grep -q '"error"' /tmp/lingma-e2e-503.json || { echo "expected a JSON 503, got $code" >&2; exit 1; }

echo "==> accounts Secret and LingmaInstance"
if [ -n "${LINGMA_ACCOUNTS_FILE:-}" ]; then
  kubectl -n "$NS" create secret generic lingma-accounts --from-file=accounts="$LINGMA_ACCOUNTS_FILE" \
    --dry-run=client -o yaml | kubectl apply -f -
else
  kubectl -n "$NS" create secret generic lingma-accounts --from-literal=accounts='nobody:nothing' \
    --dry-run=client -o yaml | kubectl apply -f -
fi
sed -e "s/namespace: lingma/namespace: $NS/" -e "s/replicas: 3/replicas: 2/" \
  charts/lingma-gateway/examples/lingmainstance.yaml \
  | sed -e "/^  lingma:/a\\    image: local/lingma-pod:$TAG\\n    imagePullPolicy: Never" \
  | kubectl apply -f -

echo "==> the operator's objects"
kubectl -n "$NS" wait --for=create statefulset/team --timeout 120s
kubectl -n "$NS" get service/team secret/team-sidecar-token poddisruptionbudget/team secret/lingma-sidecar-tokens >/dev/null
# The gateway may read the tokens Secret and no other (least privilege).
sa=system:serviceaccount:$NS:lingma-gateway-gateway
kubectl -n "$NS" auth can-i get secret/lingma-sidecar-tokens --as "$sa" | grep -qx yes
! kubectl -n "$NS" auth can-i get secret/lingma-accounts --as "$sa" | grep -qx yes
kubectl -n "$NS" get endpointslices -l app.kubernetes.io/managed-by=lingma-operator
kubectl -n "$NS" wait lingmainstance/team --for=jsonpath='{.status.conditions[?(@.type=="Progressing")].status}' --timeout 120s

echo "==> scale subresource"
kubectl -n "$NS" scale lingmainstance/team --replicas=3
kubectl -n "$NS" wait statefulset/team --for=jsonpath='{.spec.replicas}'=3 --timeout 60s

if [ -n "${LINGMA_ACCOUNTS_FILE:-}" ]; then
  echo "==> login and a chat through the gateway"
  kubectl -n "$NS" wait lingmainstance/team --for=condition=LoggedIn --timeout "$TIMEOUT"
  kubectl -n "$NS" wait lingmainstance/team --for=condition=Ready --timeout "$TIMEOUT"
  curl -fsS localhost:18317/v1/chat/completions -H 'Authorization: Bearer e2e-key' \
    -H 'Content-Type: application/json' \
    -d '{"model":"org_auto","messages":[{"role":"user","content":"Say OK."}]}'
  echo
else
  echo "==> no LINGMA_ACCOUNTS_FILE: expecting a login failure reason in the LoggedIn condition"
  kubectl -n "$NS" get lingmainstance/team -o wide
fi

echo "==> delete: owner references clean up"
kubectl -n "$NS" delete lingmainstance/team --wait
kubectl -n "$NS" wait --for=delete statefulset/team service/team secret/team-sidecar-token --timeout 120s
echo "e2e passed"
