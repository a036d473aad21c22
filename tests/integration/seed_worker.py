"""A worker written from the seed document's examples (ask_for_job /
update_job), kept as a user would have it: urllib, the jobix header, a loop
until "nada".  Run: python seed_worker.py URL JOBIX [SLEEP_SECONDS]"""
import json
import ssl
import sys
import time
import urllib.request as u

url = sys.argv[1]
my_secret_numeric_id = int(sys.argv[2])
work_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
context = ssl.create_default_context()
authead = {'jobix': my_secret_numeric_id}


def ask_for_job(job_stage):
    req = u.Request(f"{url}/get/{job_stage}", headers=authead)
    res = u.urlopen(req, context=context)
    info = json.loads(res.read().decode('utf8'))
    res.close()
    print('info', info)

    return info


def update_job(jobid, next_stage):
    req = u.Request(f"{url}/update_job/{jobid}/{next_stage}", headers=authead)
    res = u.urlopen(req, context=context)
    # Should verify that the job was accepted
    print(res.read())
    res.close()


while True:
    info = ask_for_job(0)
    if info == "nada":
        break
    print('claimed', info['jobid'], flush=True)
    time.sleep(work_seconds)
    update_job(info['jobid'], 2)
