# SIMULATED NVIDIA apt repositories (tfenv lab), served over HTTP on the lab
# network as apt.lab.test: NVIDIA's package names and versions, lab simulators inside.
FROM tfenv-lab/base:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends apt-utils \
 && rm -rf /var/lib/apt/lists/*
COPY . /opt/nvidia-sim/src/
ARG KERNEL_RELEASE
RUN python3 /opt/nvidia-sim/src/build-repos.py "${KERNEL_RELEASE}"
EXPOSE 80
CMD ["python3", "-m", "http.server", "80", "--directory", "/srv/apt"]
