# Lab SMALL dev image, for the scale lab (tfenv lab up --dev-image small): the
# dev entrypoint, sshd and a SIMULATED TensorFlow (lab-stub-tensorflow.py: the
# one op tfenv's health check runs, nothing else), so 30 lab hosts fit one
# machine. No Jupyter: a container declared on it has none. Lab only.
FROM tfenv-lab/base:bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends tini openssh-server \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/ssh/ssh_host_*

COPY lab-stub-tensorflow.py /usr/local/lib/tfenv-lab-stub/tensorflow/__init__.py
ENV PYTHONPATH=/usr/local/lib/tfenv-lab-stub
COPY tfenv-dev-entrypoint /usr/local/bin/tfenv-dev-entrypoint
COPY tfenv-sshd_config /etc/ssh/tfenv-sshd_config
RUN chmod 0755 /usr/local/bin/tfenv-dev-entrypoint && chmod 0644 /etc/ssh/tfenv-sshd_config \
 && chmod -R a+rX /usr/local/lib/tfenv-lab-stub \
 && echo "dev-small" > /etc/tfenv-lab-release

EXPOSE 2222
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tfenv-dev-entrypoint"]
