#!/bin/sh
# A job handler for `kairos worker --exec` in plain shell:
#
#   kairos worker --queue "${KAIROS_QUEUE:-default}" --exec 'sh examples/shell/worker.sh'
#
# (`kairos worker` reads KAIROS_SERVER, default http://127.0.0.1:7676.) The job arrives
# as JSON on stdin, its facts in KAIROS_JOB_*; stdout is the result; exit 65 gives up,
# any other failure is retried by the job's backoff with stderr as the error.
job=$(cat)
case "$job" in
  *'"fail":true'*) echo "asked to fail on attempt $KAIROS_JOB_ATTEMPT" >&2; exit 1 ;;
esac
printf '{"handled_by":"shell","kind":"%s","attempt":%s,"bytes":%s}\n' \
  "$KAIROS_JOB_KIND" "$KAIROS_JOB_ATTEMPT" "${#job}"
