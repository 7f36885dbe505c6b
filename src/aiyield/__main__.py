from aiyield.cli import main

main()
