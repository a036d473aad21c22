from worker_client.cli import main

main()
