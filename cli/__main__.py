from kvheal.cli import main

main()
