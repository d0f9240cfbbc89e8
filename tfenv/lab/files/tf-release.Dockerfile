# One lab release: a small layer over the shared TF base image.
ARG BASE
FROM ${BASE}
ARG RELEASE
ARG BROKEN=""
RUN echo "${RELEASE}" > /etc/tfenv-lab-release \
 && if [ -n "${BROKEN}" ]; then \
      init=$(echo /opt/tf/lib/python3*/site-packages/tensorflow/__init__.py) \
      && echo 'raise ImportError("tfenv lab: this release is broken on purpose (rollback tests)")' > "$init"; \
    fi
LABEL org.opencontainers.image.version="${RELEASE}"
