#!/bin/sh
# The page: the swarm's nodes and services, read through /var/run/docker.sock.
export HOME=/tmp
printf 'Content-Type: text/plain\r\n\r\n'
echo "Nodes:"
docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}' 2>&1
echo "Services:"
docker service ls --format '{{.Name}} {{.Replicas}}' 2>&1
