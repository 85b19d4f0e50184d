#!/bin/sh
# Start-up steps of a Prefect deployment of autolabel, safe to repeat (the compose stack's
# one-shot service `register` runs it on every `up`): migrate the annotation database, create the
# process work pools that do not exist yet (existing pools, and changes made to them, are kept),
# then register every deployment of deploy/prefect.yaml (an existing deployment is updated).
# Run it from the repository root, or from the image's code folder with deploy/ beside flows/.
set -eu

autolabel db upgrade

for pool in autolabel-cpu autolabel-gpu; do
    if prefect work-pool inspect "$pool" >/dev/null 2>&1; then
        echo "work pool $pool exists"
    else
        prefect work-pool create "$pool" --type process
    fi
done

prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml
