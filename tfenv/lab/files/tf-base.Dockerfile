# Lab TensorFlow dev image, the part every lab release shares: real
# TensorFlow (CPU build from PyPI), JupyterLab and sshd. Releases add one
# small layer on top (tf-release.Dockerfile), so a version bump pulls little.
FROM tfenv-lab/base:bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv tini openssh-server \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/ssh/ssh_host_*

# PyPI is reached through this machine's CA bundle (copied in by the build).
ARG TF_VERSION
ARG JUPYTERLAB_VERSION
COPY build-ca.crt /tmp/build-ca.crt
RUN python3 -m venv /opt/tf \
 && PIP_CERT=/tmp/build-ca.crt /opt/tf/bin/pip install --no-cache-dir --disable-pip-version-check \
      "tensorflow-cpu==${TF_VERSION}" "jupyterlab==${JUPYTERLAB_VERSION}" \
 && rm /tmp/build-ca.crt \
 && /opt/tf/bin/python -c "import tensorflow as tf; print('TF', tf.__version__)"

# Researchers' everyday tools (after the TF layer, so adding one reuses it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git less procps \
 && rm -rf /var/lib/apt/lists/*

ENV PATH=/opt/tf/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TF_CPP_MIN_LOG_LEVEL=2
# SSH sessions do not see the image's ENV: give them the same PATH, both for
# commands (pam_env reads /etc/environment) and login shells (/etc/profile resets it).
RUN printf 'PATH=/opt/tf/bin:/usr/local/bin:/usr/bin:/bin\nTF_CPP_MIN_LOG_LEVEL=2\n' >> /etc/environment \
 && printf 'export PATH=/opt/tf/bin:$PATH\nexport TF_CPP_MIN_LOG_LEVEL=2\n' > /etc/profile.d/tf.sh

COPY tfenv-dev-entrypoint /usr/local/bin/tfenv-dev-entrypoint
COPY tfenv-sshd_config /etc/ssh/tfenv-sshd_config
COPY jupyter_server_config.py /etc/jupyter/jupyter_server_config.py
RUN chmod 0755 /usr/local/bin/tfenv-dev-entrypoint && chmod 0644 /etc/ssh/tfenv-sshd_config

# Runs as the user tfenv names (docker run --user UID:GID); sshd on an
# unprivileged port.
EXPOSE 2222 8888
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tfenv-dev-entrypoint"]
