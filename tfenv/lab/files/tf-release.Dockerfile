# One lab release: a small layer over the shared TF base image.
# SIMULATE=slow|drift appends a SIMULATED regression to tensorflow/__init__.py
# (lab-sim-*.py): slower model calls, or shifted model outputs. Lab only.
ARG BASE
FROM ${BASE}
ARG RELEASE
ARG BROKEN=""
ARG SIMULATE=""
COPY lab-sim-slow.py lab-sim-drift.py /usr/local/share/tfenv-lab/
RUN echo "${RELEASE}" > /etc/tfenv-lab-release \
 && init=$(echo /opt/tf/lib/python3*/site-packages/tensorflow/__init__.py) \
 && if [ -n "${BROKEN}" ]; then \
      echo 'raise ImportError("tfenv lab: this release is broken on purpose (rollback tests)")' > "$init"; \
    fi \
 && if [ -n "${SIMULATE}" ]; then \
      printf '\n' >> "$init" && cat "/usr/local/share/tfenv-lab/lab-sim-${SIMULATE}.py" >> "$init"; \
    fi
LABEL org.opencontainers.image.version="${RELEASE}"
