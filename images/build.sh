#!/usr/bin/env bash
# Build the Keel images: the base, then every image on it (images/stage/Dockerfile with each
# image's lock), tagged by keel.images.image().
#
#   images/build.sh                  # base and every image
#   images/build.sh train evaluate   # base and only these images
#   images/build.sh --push           # build, then push every tag built and write their digests
#
# Environment:
#   KEEL_IMAGE_REGISTRY  registry and path of the tags (default localhost/keel); compile the
#                        pipeline with the same value (`make compile`)
#   DEBIAN_IMAGE         the local Debian base (default localhost/debian:bookworm-minbase);
#                        images/README.md shows how to make it
#   BUILDER              podman (default) or buildah
#   BUILD_FLAGS          extra flags for the build command, e.g. "--isolation chroot"
#                        (builds use the host's network: no bridge or firewall set-up is needed)
#   PYTHON               the interpreter that reads keel.stages and keel.images (default python3)
#   KEEL_BUILD_CA        the CA bundle pip trusts inside the build, passed as a build secret
#                        (default /etc/ssl/certs/ca-certificates.crt, the host's)
#   KEEL_IMAGE_DIGESTS   where --push writes {tag: digest} (default images/digests.json), which
#                        `KEEL_IMAGE_DIGESTS=... make compile` pins the compiled spec to
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "images/build.sh: $*" >&2
    exit 1
}

PUSH=0
REQUESTED=()
for arg in "$@"; do
    case "$arg" in
        --push) PUSH=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) die "unknown option $arg (see --help)" ;;
        *) REQUESTED+=("$arg") ;;
    esac
done

BUILDER="${BUILDER:-podman}"
DEBIAN_IMAGE="${DEBIAN_IMAGE:-localhost/debian:bookworm-minbase}"
PYTHON="${PYTHON:-python3}"
BUILD_CA="${KEEL_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
DIGESTS="${KEEL_IMAGE_DIGESTS:-images/digests.json}"
read -r -a EXTRA_FLAGS <<< "${BUILD_FLAGS:-}"

command -v "$PYTHON" > /dev/null || die "$PYTHON not found: set PYTHON to a Python 3.11"

# Images (keel/images.py), tags and version come from the package itself, run from the checkout.
keel_py() { env -u KEEL_IMAGE_DIGESTS "$PYTHON" -c "import sys; sys.path.insert(0, '.'); $1"; }
VERSION="$(keel_py 'from keel import __version__; print(__version__)')"
read -r -a NAMES <<< "$(keel_py 'from keel.images import IMAGE_NAMES; print(*IMAGE_NAMES)')"
if [ "${#REQUESTED[@]}" -gt 0 ]; then
    for name in "${REQUESTED[@]}"; do
        [[ " ${NAMES[*]} " == *" $name "* ]] || die "unknown image '$name'; images are ${NAMES[*]}"
    done
    NAMES=("${REQUESTED[@]}")
fi
tag_of() { keel_py "from keel.images import image; print(image('$1'))"; }

case "$BUILDER" in
    podman) build_cmd=(podman build) ;;
    buildah) build_cmd=(buildah bud) ;;
    *) die "BUILDER must be podman or buildah, got '$BUILDER'" ;;
esac
command -v "$BUILDER" > /dev/null \
    || die "$BUILDER is not installed (apt-get install podman, or set BUILDER=buildah)"
[ -r "$BUILD_CA" ] || die "KEEL_BUILD_CA=$BUILD_CA is not a readable CA bundle"
"$PYTHON" images/lock.py --check \
    || die "images/locks/ is out of date with requirements.lock: run \`make lock\`"

image_exists() {
    if [ "$BUILDER" = podman ]; then
        podman image exists "$1"
    else
        buildah inspect --type image "$1" > /dev/null 2>&1
    fi
}
image_exists "$DEBIAN_IMAGE" || die "the Debian base image $DEBIAN_IMAGE is missing.
Make it once (as root) with images/debian-base.sh, or set DEBIAN_IMAGE to a Debian bookworm
image you already have."

GIT_COMMIT="$(git rev-parse HEAD 2> /dev/null || echo unknown)"
if [ "$GIT_COMMIT" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    GIT_COMMIT="$GIT_COMMIT-dirty"
fi

BASE_TAG="$(tag_of base)"
echo "==> $BASE_TAG"
"${build_cmd[@]}" --network host "${EXTRA_FLAGS[@]}" \
    -f images/base/Dockerfile \
    --secret "id=ca,src=$BUILD_CA" \
    --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    --build-arg "KEEL_VERSION=$VERSION" \
    -t "$BASE_TAG" .
BUILT=("$BASE_TAG")

for name in "${NAMES[@]}"; do
    tag="$(tag_of "$name")"
    description="$(keel_py "from keel.images import image_spec; print('Keel $name: ' + image_spec('$name').does)")"
    module="$(keel_py "from keel.images import image_spec; print(image_spec('$name').module)")"
    echo "==> $tag (commit $GIT_COMMIT)"
    "${build_cmd[@]}" --network host "${EXTRA_FLAGS[@]}" \
        -f images/stage/Dockerfile \
        --secret "id=ca,src=$BUILD_CA" \
        --build-arg "BASE_IMAGE=$BASE_TAG" \
        --build-arg "IMAGE=$name" \
        --build-arg "MODULE=$module" \
        --build-arg "DESCRIPTION=$description" \
        --build-arg "KEEL_IMAGE=$tag" \
        --build-arg "KEEL_VERSION=$VERSION" \
        --build-arg "KEEL_GIT_COMMIT=$GIT_COMMIT" \
        -t "$tag" .
    BUILT+=("$tag")
done

if [ "$PUSH" = 1 ]; then
    digests="$(mktemp)"
    trap 'rm -f "$digests" "$digests".one' EXIT
    echo "{}" > "$digests"
    for tag in "${BUILT[@]}"; do
        echo "==> push $tag"
        "$BUILDER" push --digestfile "$digests.one" "$tag"
        "$PYTHON" -c 'import json, sys; p, tag, one = sys.argv[1:]; d = json.load(open(p)); \
d[tag] = open(one).read().strip(); json.dump(d, open(p, "w"), indent=2, sort_keys=True)' \
            "$digests" "$tag" "$digests.one"
    done
    mv "$digests" "$DIGESTS"
    echo "wrote $DIGESTS: compile with KEEL_IMAGE_DIGESTS=$DIGESTS make compile"
fi
printf 'built %s\n' "${BUILT[@]}"
