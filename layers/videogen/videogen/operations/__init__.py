"""The operations the handlers call, one module each.

- :mod:`.submit`: ``POST /videos`` (validate, record, start the provider job and workflow)
- :mod:`.callback`: the task API's callback (token, payload, then finish the job)
- :mod:`.store`: finishing a job (stream the MP4 into S3, or fail it), shared by all paths
- :mod:`.generate`: the legacy route's streaming call, run by the workflow
- :mod:`.jobs`: the job JSON, one job or a page of them
"""
