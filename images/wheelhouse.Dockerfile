# Packs a local wheelhouse directory (the build context) into an image that the
# LakeRAG Dockerfiles bind-mount at /wheels while pip runs (WHEELHOUSE_IMAGE);
# a bind mount leaves nothing in the image's layers. Built by images/build.sh.
FROM scratch
COPY . /
