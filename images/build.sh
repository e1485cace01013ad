#!/usr/bin/env bash
# Build the Keel images: the base, then one image per stage, tagged by keel.images.image().
#
#   images/build.sh                  # base and every stage
#   images/build.sh train evaluate   # base and only these stages
#   images/build.sh --push           # build, then push every tag built
#
# Environment:
#   KEEL_IMAGE_REGISTRY  registry and path of the tags (default localhost/keel); compile the
#                        pipeline with the same value (`make compile`)
#   DEBIAN_IMAGE         the local Debian base (default localhost/debian:bookworm-minbase);
#                        images/README.md shows how to make it
#   BUILDER              podman (default) or buildah
#   BUILD_FLAGS          extra flags for the build command, e.g. "--isolation chroot"
#   PYTHON               the interpreter that reads keel.stages and keel.images (default python3)
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
read -r -a EXTRA_FLAGS <<< "${BUILD_FLAGS:-}"

command -v "$PYTHON" > /dev/null || die "$PYTHON not found: set PYTHON to a Python 3.11"

# Images (keel/images.py: the stages of keel/stages.py, predict and serve), tags and version come
# from the package itself, run from the checkout.
keel_py() { "$PYTHON" -c "import sys; sys.path.insert(0, '.'); $1"; }
VERSION="$(keel_py 'from keel import __version__; print(__version__)')"
read -r -a STAGES <<< "$(keel_py 'from keel.images import IMAGE_NAMES; print(*IMAGE_NAMES)')"
if [ "${#REQUESTED[@]}" -gt 0 ]; then
    for stage in "${REQUESTED[@]}"; do
        [[ " ${STAGES[*]} " == *" $stage "* ]] || die "unknown stage '$stage'; stages are ${STAGES[*]}"
    done
    STAGES=("${REQUESTED[@]}")
fi
tag_of() { keel_py "from keel.images import image; print(image('$1'))"; }

case "$BUILDER" in
    podman) build_cmd=(podman build) ;;
    buildah) build_cmd=(buildah bud) ;;
    *) die "BUILDER must be podman or buildah, got '$BUILDER'" ;;
esac
command -v "$BUILDER" > /dev/null \
    || die "$BUILDER is not installed (apt-get install podman, or set BUILDER=buildah)"

image_exists() {
    if [ "$BUILDER" = podman ]; then
        podman image exists "$1"
    else
        buildah inspect --type image "$1" > /dev/null 2>&1
    fi
}
image_exists "$DEBIAN_IMAGE" || die "the Debian base image $DEBIAN_IMAGE is missing.
Make it once (as root), as images/README.md explains:
  debootstrap --variant=minbase bookworm /tmp/rootfs
  tar -C /tmp/rootfs -c . | podman import - $DEBIAN_IMAGE
or set DEBIAN_IMAGE to a Debian bookworm image you already have."

GIT_COMMIT="$(git rev-parse HEAD 2> /dev/null || echo unknown)"
if [ "$GIT_COMMIT" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    GIT_COMMIT="$GIT_COMMIT-dirty"
fi

BASE_TAG="$(tag_of base)"
echo "==> $BASE_TAG (commit $GIT_COMMIT)"
"${build_cmd[@]}" "${EXTRA_FLAGS[@]}" \
    -f images/base/Dockerfile \
    --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    --build-arg "KEEL_VERSION=$VERSION" \
    --build-arg "KEEL_GIT_COMMIT=$GIT_COMMIT" \
    -t "$BASE_TAG" .
BUILT=("$BASE_TAG")

for stage in "${STAGES[@]}"; do
    tag="$(tag_of "$stage")"
    echo "==> $tag"
    "${build_cmd[@]}" "${EXTRA_FLAGS[@]}" \
        -f "images/$stage/Dockerfile" \
        --build-arg "BASE_IMAGE=$BASE_TAG" \
        --build-arg "KEEL_IMAGE=$tag" \
        --build-arg "KEEL_VERSION=$VERSION" \
        --build-arg "KEEL_GIT_COMMIT=$GIT_COMMIT" \
        -t "$tag" .
    BUILT+=("$tag")
done

if [ "$PUSH" = 1 ]; then
    for tag in "${BUILT[@]}"; do
        echo "==> push $tag"
        "$BUILDER" push "$tag"
    done
fi
printf 'built %s\n' "${BUILT[@]}"
